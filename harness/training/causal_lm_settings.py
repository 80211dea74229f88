"""The settings of the from-scratch causal-LM loop (:mod:`harness.training.causal_lm`), which the
``pretrain`` experiment exposes and the pretrained testbed's recipe (:mod:`harness.models.pretrained`)
is made of. Torch-free, so listing an experiment's settings stays cheap."""

from __future__ import annotations

from jobs.params import Param

MODELS = ("tiny-gpt2", "tiny-pythia")
CORPORA = ("python", "synthetic", "mixed")

PARAMS = {
    # the model
    "model": Param(str, "tiny-gpt2", "family shape to build (initialised from the seed)", choices=MODELS),
    "layers": Param(int, 4, "transformer layers", minimum=1),
    "hidden": Param(int, 64, "hidden size", minimum=8),
    "heads": Param(int, 4, "attention heads", minimum=1),
    "activation": Param(str, "keep", "MLP activation: keep the family's (GELU) or gelu/relu", choices=("keep", "gelu", "relu")),
    "block_norms": Param(str, "keep", "the norms before attention and MLP: keep, or none (removed)", choices=("keep", "none")),
    "final_norm": Param(str, "keep", "the final norm: keep, or none (removed)", choices=("keep", "none")),
    # data
    "corpus": Param(str, "mixed", "python: the standard library's source; synthetic: the instruction records "
                    "rendered; mixed: both (a quarter synthetic)", choices=CORPORA),
    "corpus_chars": Param(int, 3_000_000, "characters of corpus read", minimum=10_000),
    "seq_len": Param(int, 128, "tokens per training window (the paper's context)", minimum=8),
    # optimisation
    "batch_size": Param(int, 16, "windows per step", minimum=1),
    "steps": Param(int, 2000, "optimizer steps", minimum=1),
    "lr": Param(float, 3e-3, "peak learning rate (AdamW, betas 0.9/0.95)", minimum=0.0),
    "warmup_steps": Param(int, 100, "linear warm-up steps, then cosine decay to 0", minimum=0),
    "weight_decay": Param(float, 0.1, "AdamW weight decay (matrices only)", minimum=0.0),
    "max_grad_norm": Param(float, 1.0, "gradient clipping norm", minimum=0.0),
    "fp16": Param(bool, False, "float16 autocast with a gradient scaler (where norm-free instability shows)"),
    "seed": Param(int, 0, "seed for weights and data order"),
    # bookkeeping
    "eval_every": Param(int, 500, "steps between validation evaluations (0: only at the end)", minimum=0),
    "eval_batches": Param(int, 8, "validation batches (fixed windows, the same for every cell)", minimum=1),
    "log_every": Param(int, 10, "steps between logged training figures", minimum=1),
    "checkpoint_every": Param(int, 500, "steps between checkpoints", minimum=1),
    "entropy_every": Param(int, 100, "steps between attention entropy / NaN probes on the training batch (0: none)",
                           minimum=0),
    "publish": Param(bool, False, "save the trained model as the testbed model gridlab/<model>-pretrained "
                     "(needs the testbed recipe: the defaults above)"),
}
