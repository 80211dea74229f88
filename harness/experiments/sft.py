"""Supervised fine-tuning with architecture surgery and PEFT: the research grids' experiment.

A cell names a model (a hub name, a tiny offline variant, a pretrained testbed model or a local
``save_pretrained`` directory), a norm swap (keep the model's own, LayerNorm, DyT with a fixed,
per-role or calibrated alpha, RMSNorm, none; at once or healed gradually while training), an
MLP activation, a PEFT method and training strategy, a dataset, and hyper-parameters; the work
is :class:`harness.training.recipe.SFTRecipe`. Heavy imports happen inside :func:`run`, so
validating a grid stays fast; checking a model name imports the registry only when a grid sets
one (and never downloads).
"""

from __future__ import annotations

import functools
from pathlib import Path

from harness.evaluation import hook
from jobs.params import Param

NORMS = ("keep", "layernorm", "dyt", "rmsnorm", "none")
HEAL = ("instant", "layerwise", "blend")
ACTIVATIONS = ("keep", "gelu", "relu")
PEFT = ("lora", "ia3", "full")
STRATEGIES = ("frozen", "selective", "full")
DATASETS = ("alpaca", "sharegpt", "rewild", "synthetic")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
PARALLELISM = ("ddp", "fsdp")


def _check_model(name: str) -> str | None:
    from harness.models import registry

    try:
        registry.family_of(name)
    except registry.UnknownModel as error:
        return str(error)
    return None


def _is_seq2seq(name: str) -> bool:
    from harness.models import registry

    try:
        return registry.family_of(name).seq2seq
    except registry.UnknownModel:
        return False  # reported by the model's own check


def _check_data_path(path: str) -> str | None:
    from harness.data import loaders
    from harness.data.errors import DataError

    if path.startswith(loaders.HUB_FILE_PREFIX):
        try:
            loaders.parse_hub_file(path)
        except DataError as error:
            return str(error)
        return None
    if path and path.startswith((".", "/", "~")) and not Path(path).expanduser().exists():
        return f"no file at {path}; give an existing local file or a hub dataset name"
    return None


def _check_share(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be a share between 0 and 1, got {value!r}"


def _check_validation_share(value: float) -> str | None:
    return None if 0.0 <= value < 1.0 else f"must be a share in [0, 1), got {value!r}"


PARAMS = {
    # what is trained
    "model": Param(str, "tiny-gpt2", "a hub name, a tiny offline variant (tiny-gpt2, tiny-pythia, tiny-t5) "
                   "or a local save_pretrained directory", check=_check_model),
    # `norm` was "layernorm" by default before "keep" existed: a cell that named its norm keeps its
    # identity; one that left it out is now "keep" (on T5 the old default swapped its RMS norms).
    "norm": Param(str, "keep", "every norm becomes this kind; keep: the model's own norms, untouched",
                  choices=NORMS, neutral=True),
    "dyt_alpha": Param(float, 0.5, "DyT's initial alpha (all layers)", minimum=0.0),
    "dyt_alpha_attn": Param(float, 0.0, "DyT's initial alpha for the norms before attention (0: dyt_alpha)",
                            minimum=0.0, neutral=True),
    "dyt_alpha_ffn": Param(float, 0.0, "DyT's initial alpha for the norms before the MLP (0: dyt_alpha)",
                           minimum=0.0, neutral=True),
    "dyt_alpha_final": Param(float, 0.0, "DyT's initial alpha for the final norms (0: dyt_alpha)",
                             minimum=0.0, neutral=True),
    "dyt_calibrate": Param(bool, False, "fit DyT's alpha per layer, in order, on real tokens of training batches"),
    "calibration_batches": Param(int, 2, "training batches the DyT calibration sees", minimum=1),
    "heal": Param(str, "instant", "how the swap happens: instant (all at once, before training), or while training: "
                  "layerwise (one norm at a time, MLP norms first, as the LN-removal recipe) or blend (each "
                  "mixed from the old norm to the new)", choices=HEAL, neutral=True),
    "heal_steps": Param(int, 0, "steps over which a healed swap completes (0: half of steps)", minimum=0,
                        neutral=True),
    "eval_at_start": Param(bool, False, "evaluate before training too: the model as loaded, and at step 0 after "
                           "the swap (what the swap itself costs)", neutral=True),
    "activation": Param(str, "keep", "MLP activation: keep the model's, or swap to gelu/relu", choices=ACTIVATIONS),
    "peft": Param(str, "lora", "adapter method; full means no adapter", choices=PEFT),
    "strategy": Param(str, "frozen", "what trains besides the adapter: nothing, the norms, or everything",
                      choices=STRATEGIES),
    "lora_r": Param(int, 8, "LoRA rank", minimum=1),
    "lora_alpha": Param(int, 16, "LoRA scaling numerator", minimum=1),
    "lora_dropout": Param(float, 0.0, "LoRA dropout", minimum=0.0),
    # data
    "dataset": Param(str, "synthetic", "record format of the data (synthetic needs no file)", choices=DATASETS),
    "data_path": Param(str, "", "local JSON/JSONL/Parquet file (also .gz/.bz2/.zst), one file of a hub dataset "
                       "repository (hf://datasets/OWNER/NAME/FILE) or a hub dataset name (empty: the format's default)",
                       check=_check_data_path),
    "synthetic_records": Param(int, 512, "records of the synthetic dataset", minimum=2),
    "max_bad_share": Param(float, 0.1, "refuse a data file with more than this share of bad records", check=_check_share),
    "response_only": Param(bool, True, "loss on the response tokens only"),
    "validation_share": Param(float, 0.05, "share of records held out for validation", check=_check_validation_share),
    "max_length": Param(int, 256, "tokens per example (longer ones are cut)", minimum=8),
    # optimisation
    "lr": Param(float, 2e-4, "peak learning rate (AdamW)", minimum=0.0),
    "lr_scheduler": Param(str, "linear", "learning-rate schedule", choices=SCHEDULERS),
    "warmup_steps": Param(int, 0, "linear warm-up steps", minimum=0),
    "weight_decay": Param(float, 0.0, "AdamW weight decay", minimum=0.0),
    "max_grad_norm": Param(float, 1.0, "gradient clipping norm (0: none)", minimum=0.0),
    "steps": Param(int, 100, "optimizer steps", minimum=1),
    "batch_size": Param(int, 8, "examples per micro-batch", minimum=1),
    "grad_accum": Param(int, 1, "micro-batches per optimizer step", minimum=1),
    "bf16": Param(bool, False, "bfloat16 mixed precision (needs a GPU or a CPU that supports it)"),
    "packing": Param(bool, False, "padding-free packing (causal models): each micro-batch's examples end to end "
                     "in one row, attention kept within each example; same examples per step, no pad tokens",
                     neutral=True),
    "torch_compile": Param(bool, False, "compile the model with torch.compile (first steps are slow)", neutral=True),
    "ranks": Param(int, 1, "processes the cell trains with, on one node (torch.distributed: one GPU each, or the "
                   "CPU with gloo); batch_size stays the global micro-batch, split evenly between them",
                   minimum=1, neutral=True),
    "parallelism": Param(str, "ddp", "how ranks > 1 share the model: ddp (a replica each) or fsdp (sharded, for "
                         "models that do not fit one GPU)", choices=PARALLELISM, neutral=True),
    "seed": Param(int, 0, "seed for adapter init, data split and order, dropout"),
    # bookkeeping
    "eval_every": Param(int, 50, "steps between evaluations (0: only at the end)", minimum=0),
    "checkpoint_every": Param(int, 50, "steps between checkpoints", minimum=1),
    "log_every": Param(int, 1, "steps between logged training figures", minimum=1),
    "diagnostics": Param(bool, True, "at each evaluation, attention entropy and NaN/inf counts per layer"),
    # after training: answers to a prompt set (timed), lm-eval tasks, ROUGE/BLEU
    **hook.PARAMS,
}


def check_spec(spec: dict) -> str | None:
    """A problem with a whole cell's settings together (checked when the grid is loaded)."""
    if spec["peft"] == "full" and spec["strategy"] != "full":
        return f"peft 'full' trains every parameter, so strategy must be 'full', not {spec['strategy']!r}"
    if spec["packing"] and _is_seq2seq(spec["model"]):
        return f"packing applies to causal models; {spec['model']!r} is encoder-decoder, so set packing: false"
    if spec["batch_size"] % spec["ranks"]:
        return (f"batch_size {spec['batch_size']} is the global micro-batch and must split evenly between "
                f"{spec['ranks']} ranks; make it a multiple of {spec['ranks']}")
    if spec["heal"] != "instant" and spec["norm"] not in ("dyt", "none"):
        return f"heal replaces norms with DyT or none; norm is {spec['norm']!r}, so set heal: instant"
    if spec["heal_steps"] > spec["steps"]:
        return f"heal_steps ({spec['heal_steps']}) is past the last step ({spec['steps']}); the model would end half-healed"
    problem = hook.check_spec(spec)
    if problem:
        return problem
    if spec["dataset"] == "synthetic" and spec["data_path"]:
        return "data_path is set but dataset is synthetic; set dataset to the file's format"
    path = Path(spec["data_path"]).expanduser()
    if spec["data_path"] and path.is_file():
        stat = path.stat()  # in the cache key: a file changed since is read again
        return _data_file_problem(str(path), spec["dataset"], spec["max_bad_share"], stat.st_mtime_ns, stat.st_size)
    return None


@functools.lru_cache(maxsize=64)
def _data_file_problem(path: str, dataset: str, max_bad_share: float, _mtime_ns: int, _size: int) -> str | None:
    """Read a local data file once at enqueue time, as the job will: a corrupted file is
    refused before anything is queued, not after a worker has started on it."""
    from harness.data import loaders
    from harness.data.errors import DataError

    try:
        loaders.load(path, dataset, max_bad_share=max_bad_share)
    except DataError as error:
        return str(error)
    return None


def ranks(spec: dict) -> int:
    """How many processes a cell trains with (see :func:`harness.experiments.ranks_for`)."""
    return int(spec["ranks"])


def run(ctx) -> None:
    from harness.params import InvalidSpec
    from harness.training import recipe

    problem = check_spec(ctx.spec)
    if problem:
        raise InvalidSpec(problem, "fix the grid file")
    recipe.run(ctx, probe=ctx.spec["diagnostics"])
