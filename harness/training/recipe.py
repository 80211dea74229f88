"""The supervised fine-tuning recipe a grid cell of the ``sft`` experiment runs.

A small class in torchtune's style: each ``_setup_*`` step builds one thing from the resolved
spec, and :meth:`SFTRecipe.train` runs transformers' Trainer with
:class:`harness.training.callbacks.GridlabCallback`. Order matters and is the same on a fresh
start and on a resume: model, data, (the evaluation as loaded), surgery (activation, then norm,
then the healing wrappers), adapters, trainer; the norm swap is always in place before adapter
weights are loaded. With ``eval_at_start`` the model is evaluated as loaded and again at step 0
after its swap (``val_loss_as_loaded``, ``val_loss_step0``: what the swap itself costs); with a
healed swap (``heal``) :class:`harness.training.healing.HealingCallback` moves the schedule along.

A checkpoint is Trainer's ``checkpoint-<step>/`` (model or adapter weights in safetensors,
optimizer, scheduler, RNG states, trainer state with the data position), written into the
attempt's own folder and made the job's by ``ctx.checkpoint`` (sealed, fenced, recorded:
:mod:`jobs.checkpoints`). A resumed attempt loads the one the database recorded
(``ctx.resume_from``), nothing else. With a peft adapter and strategy ``full`` the base weights
train too but are not in the adapter file, so the whole model is also written there as
``full_model.safetensors``. DyT calibration is stored in the run folder, so a resumed run uses
exactly the alphas the run it continues fitted (a fresh start fits again).

A cell with ``ranks: N`` runs this recipe in each of N processes (:mod:`jobs.ranks`): Trainer
trains with DDP (or FSDP on GPUs, ``parallelism: fsdp``), ``batch_size`` is the global
micro-batch split evenly between the ranks, and only rank 0's context writes; the evaluation
after training is rank 0's alone (:mod:`harness.training.distributed`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import transformers

from harness.data import formats, loaders, split, synthetic, tokenization
from harness.data.errors import DataError
from harness.evaluation import hook
from harness.models import calibrate, healing, registry, surgery
from harness.training import adapters, attention_log, callbacks, distributed
from harness.training import healing as healing_callback
from harness.training.trainer import Trainer, pooled_evaluation

log = logging.getLogger(__name__)

FULL_MODEL_FILE = "full_model.safetensors"
CALIBRATION_FILE = "dyt_calibration.json"
#: The evaluations before training (``eval_at_start``), kept for a resumed attempt's summaries.
START_EVAL_FILE = "start_evaluation.json"
#: Where each format's data comes from when the cell gives no ``data_path``.
DEFAULT_SOURCES = {"alpaca": "tatsu-lab/alpaca"}


class SFTRecipe:
    def __init__(self, spec: dict[str, Any], ctx, *, probe: bool = True) -> None:
        self.spec = spec
        self.ctx = ctx
        self.probe = probe
        self.run_dir = Path(ctx.run_dir)
        self.summaries: dict[str, float] = {}

    # --- set-up, one step each ------------------------------------------------------

    def setup(self) -> None:
        transformers.utils.logging.disable_progress_bar()
        transformers.set_seed(self.spec["seed"])
        self.resume_path = self.ctx.resume_from
        self.resume_step = self.ctx.resume_step
        with distributed.main_first():  # rank 0 builds or downloads, the others then read the cache
            self._setup_model()
            self._setup_data()
        if self.spec["eval_at_start"] and self.eval_dataset is not None:
            if self.resume_path is None:
                self._evaluate_as_loaded()
            else:
                self._restore_start_evaluation()
        self._setup_surgery()
        self._setup_adapters()
        self._setup_trainer()

    def _setup_model(self) -> None:
        self.model, self.tokenizer, self.family = registry.load(self.spec["model"])
        self.model.config.use_cache = False

    def _setup_data(self) -> None:
        s = self.spec
        name = s["dataset"]
        if name == "synthetic":
            conversations = [formats.alpaca(r) for r in synthetic.records(s["synthetic_records"], s["seed"])]
            self.summaries["data_records"] = len(conversations)
        else:
            source = s["data_path"] or DEFAULT_SOURCES.get(name)
            if not source:
                raise DataError(f"dataset {name!r} has no default source; set data_path to a local file or hub dataset")
            loaded = loaders.load(source, name, max_bad_share=s["max_bad_share"])
            if loaded.report.skipped:
                log.warning("%s", loaded.report.summary())
            conversations = loaded.conversations
            self.summaries.update(data_records=loaded.report.total, data_skipped=loaded.report.lost)
        train, val = split.train_validation(conversations, s["validation_share"], s["seed"])
        self.validation = val  # kept for the evaluation after training (ROUGE/BLEU references)

        def tok(items):
            return tokenization.tokenize(items, self.tokenizer, seq2seq=self.family.seq2seq,
                                         max_length=s["max_length"], response_only=s["response_only"])

        train_tok, val_tok = tok(train), tok(val) if val else None
        if len(train_tok.dataset) == 0:
            raise DataError(f"no training example is left after cutting at max_length={s['max_length']}; raise max_length")
        self.train_dataset = train_tok.dataset
        self.eval_dataset = val_tok.dataset if val_tok is not None and len(val_tok.dataset) else None
        lengths = [len(ids) for ids in self.train_dataset["input_ids"]]
        self.summaries.update(train_examples=len(self.train_dataset),
                              train_tokens_mean=sum(lengths) / len(lengths),
                              val_examples=len(self.eval_dataset) if self.eval_dataset is not None else 0,
                              dropped_examples=train_tok.dropped + (val_tok.dropped if val_tok else 0))
        self.collator = collator(self.tokenizer, packing=s["packing"])

    def _evaluate_as_loaded(self) -> None:
        """The model before any surgery, on the validation set: the baseline the swap's own
        cost (the step-0 evaluation after it) is read against."""
        bs = self.spec["batch_size"]
        rows = [self.eval_dataset[i] for i in range(len(self.eval_dataset))]
        figures = pooled_evaluation(self.model, (self.collator(rows[i : i + bs]) for i in range(0, len(rows), bs)),
                                    seq2seq=self.family.seq2seq)
        self.summaries.update(val_loss_as_loaded=figures["nll_pooled"],
                              val_token_accuracy_as_loaded=figures["mean_token_accuracy"])

    def _restore_start_evaluation(self) -> None:
        """A resumed attempt does not evaluate before training again: the run it continues did,
        and its figures (summaries are rewritten by every attempt) are in the run folder."""
        stored = self.run_dir / START_EVAL_FILE
        if stored.is_file():
            self.summaries.update(json.loads(stored.read_text(encoding="utf-8")))

    def _store_start_evaluation(self) -> None:
        keys = ("val_loss_as_loaded", "val_token_accuracy_as_loaded", "val_loss_step0", "val_token_accuracy_step0")
        figures = {k: self.summaries[k] for k in keys if k in self.summaries}
        tmp = self.run_dir / f"{START_EVAL_FILE}.a{self.ctx.attempt}.tmp"
        tmp.write_text(json.dumps(figures, indent=1), encoding="utf-8")
        os.replace(tmp, self.run_dir / START_EVAL_FILE)

    def _setup_surgery(self) -> None:
        s = self.spec
        if s["activation"] != "keep":
            report = surgery.swap_activation(self.model, s["activation"])
            self.summaries["activations_swapped"] = len(report.replaced)
        alpha: float | dict[str, float] = s["dyt_alpha"]
        if any(s[f"dyt_alpha_{role}"] for role in surgery.ROLES):  # the DyT paper's per-role alphas for LLMs
            alpha = surgery.alphas_by_role(self.model, *(s[f"dyt_alpha_{role}"] or s["dyt_alpha"] for role in surgery.ROLES))
        if s["norm"] == "dyt" and s["dyt_calibrate"]:
            alpha = self._calibrated_alphas(alpha)
        originals = surgery.norm_modules(self.model)
        report = surgery.swap_norm(self.model, s["norm"], alpha=alpha)
        self.summaries["norms_swapped"] = len(report.replaced)
        self.heal_steps = 0
        if s["heal"] != "instant" and report.replaced:
            self.heal_steps = s["heal_steps"] or max(1, s["steps"] // 2)
            healing.wrap(self.model, {name: originals[name] for name in report.replaced},
                         schedule=s["heal"], heal_steps=self.heal_steps)
            self.summaries["heal_steps"] = self.heal_steps

    def _calibrated_alphas(self, default_alpha: float | dict[str, float]) -> dict[str, float]:
        stored = self.run_dir / CALIBRATION_FILE
        if self.resume_path is not None and stored.is_file():  # a resumed attempt uses the fit it continues
            fits = json.loads(stored.read_text(encoding="utf-8"))
        else:
            result = calibrate.calibrate_dyt(self.model, self._calibration_batches(), default_alpha=default_alpha,
                                             seed=self.spec["seed"])
            fits = [{"name": f.name, "role": f.role, "alpha": f.alpha, "default_alpha": f.default_alpha,
                     "mse": f.mse, "mse_default": f.mse_default, "drift": f.drift} for f in result.layers]
            if self.ctx.is_main:  # every rank fits the same alphas (same model, data and seed)
                tmp = stored.with_suffix(f".a{self.ctx.attempt}.tmp")
                tmp.write_text(json.dumps(fits, indent=1), encoding="utf-8")
                os.replace(tmp, stored)
        for f in fits:
            self.summaries[f"dyt_alpha/{f['name']}"] = f["alpha"]
            self.summaries[f"dyt_fit_mse/{f['name']}"] = f["mse"]
            self.summaries[f"dyt_fit_mse_default/{f['name']}"] = f["mse_default"]
            if "drift" in f:
                self.summaries[f"dyt_fit_drift/{f['name']}"] = f["drift"]
        return {f["name"]: f["alpha"] for f in fits}

    def _calibration_batches(self) -> list[dict]:
        """The first ``calibration_batches`` training micro-batches, collated."""
        n = self.spec["calibration_batches"] * self.spec["batch_size"]
        rows = [self.train_dataset[i] for i in range(min(n, len(self.train_dataset)))]
        bs = self.spec["batch_size"]
        return [self.collator(rows[i : i + bs]) for i in range(0, len(rows), bs)]

    def _setup_adapters(self) -> None:
        s = self.spec
        prepared = adapters.prepare(self.model, method=s["peft"], strategy=s["strategy"], r=s["lora_r"],
                                    lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"])
        self.model = prepared.model
        self.summaries.update(trainable_params=prepared.trainable, total_params=prepared.total)
        # With an adapter and strategy "full", the base weights train but the adapter file lacks them.
        self.save_full_model = s["peft"] != "full" and s["strategy"] == "full"
        if self.resume_path is not None and self.save_full_model:
            safetensors.torch.load_model(self.model, str(self.resume_path / FULL_MODEL_FILE), strict=True)

    def _setup_trainer(self) -> None:
        s = self.spec
        evaluate = self.eval_dataset is not None and s["eval_every"] > 0
        settings = dict(
            output_dir=str(self.ctx.attempt_dir / "trainer"),
            max_steps=s["steps"],
            gradient_accumulation_steps=s["grad_accum"],
            learning_rate=s["lr"],
            lr_scheduler_type=s["lr_scheduler"],
            warmup_steps=s["warmup_steps"],
            weight_decay=s["weight_decay"],
            max_grad_norm=s["max_grad_norm"],
            bf16=s["bf16"],
            # bf16 without a GPU: Trainer wants the CPU asked for by name (its bf16 autocast).
            use_cpu=s["bf16"] and not torch.cuda.is_available(),
            torch_compile=s["torch_compile"],
            seed=s["seed"],
            data_seed=s["seed"],
            logging_strategy="steps",
            logging_steps=s["log_every"],
            logging_nan_inf_filter=False,  # a NaN loss must reach the callback, not be averaged away
            eval_strategy="steps" if evaluate else "no",
            eval_steps=s["eval_every"] if evaluate else None,
            save_strategy="steps",
            save_steps=s["checkpoint_every"],
            save_total_limit=None,  # pruned by harness.training.checkpoints, which knows sealed from torn
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        # the batch per rank, and for N ranks the backend (gloo on CPU) and FSDP if asked for
        settings.update(distributed.trainer_arguments(s, self.ctx.world_size, block_classes=self.family.block_classes))
        args = transformers.TrainingArguments(**settings)
        self.trainer = Trainer(
            model=self.model,
            args=args,
            train_dataset=self.train_dataset,
            eval_dataset=self.eval_dataset,
            data_collator=self.collator,
            processing_class=self.tokenizer,
            seq2seq=self.family.seq2seq,
        )
        self.attention = attention_log.AttentionLog(self.ctx.attempt_dir, resume_from=self.resume_path,
                                                    resume_step=self.resume_step,
                                                    store=self.ctx.log_attention) if self.probe else None
        self.callback = callbacks.GridlabCallback(
            self.ctx, self.trainer.step_stats, self.family,
            on_checkpoint=self._write_full_model if self.save_full_model else None, probe=self.probe,
            attention=self.attention)
        self.trainer.add_callback(self.callback)
        if self.heal_steps:
            self.trainer.add_callback(healing_callback.HealingCallback(
                self.model, self.ctx, refit_batches=self._calibration_batches() if self.spec["norm"] == "dyt" else (),
                seed=self.spec["seed"]))
        self.trainer.remove_callback(transformers.PrinterCallback)  # figures go to the database, not stdout

    def _write_full_model(self, path: Path) -> None:
        safetensors.torch.save_model(self.model, str(path / FULL_MODEL_FILE))

    # --- running --------------------------------------------------------------------

    def train(self) -> None:
        """Train to ``steps`` (or until asked to stop), then evaluate and write the summaries."""
        from jobs.errors import Interrupted

        self.ctx.summary(callbacks.without_nan(self.summaries))  # set-up figures (calibration, counts) right away
        (stop,) = distributed.any_rank(self.ctx.should_stop())
        if stop:
            raise Interrupted(self.ctx.stop_reason, self.ctx.stop_outcome)
        if self.resume_path is not None:
            log.info("resuming from %s", self.resume_path)
        trained = self.resume_path is not None and (self.resume_step or 0) >= self.spec["steps"]
        if self.spec["eval_at_start"] and self.resume_path is None and self.eval_dataset is not None:
            self.trainer.evaluate()  # step 0: the swapped model before any training (logged at step 0)
            for key in ("val_loss", "val_token_accuracy"):
                if key in self.callback.last_eval:
                    self.summaries[f"{key}_step0"] = self.callback.last_eval[key]
            self._store_start_evaluation()
            self.ctx.summary(callbacks.without_nan(self.summaries))
        if trained:
            healing.set_step(self.trainer.model, self.spec["steps"], carry_parameters=False)
            # The previous attempt finished training and died afterwards (e.g. while
            # evaluating): load the final weights. Asking Trainer to resume at max_steps
            # makes transformers 5 run one step too many.
            self.trainer._load_from_checkpoint(str(self.resume_path))
            self.trainer.state.global_step = self.spec["steps"]
            train_runtime = math.nan
        else:
            result = self.trainer.train(resume_from_checkpoint=str(self.resume_path) if self.resume_path else None)
            train_runtime = result.metrics.get("train_runtime", math.nan)
        if self.callback.stopping and self.trainer.state.global_step < self.spec["steps"]:
            raise Interrupted(self.ctx.stop_reason, self.ctx.stop_outcome)
        final = dict(self.summaries)
        final.update(steps=self.trainer.state.global_step, train_runtime_s=train_runtime)
        if self.eval_dataset is not None:
            if self.callback.last_eval_step != self.trainer.state.global_step:
                self.trainer.evaluate()
            final.update({k: v for k, v in self.callback.last_eval.items()
                          if k in ("val_loss", "val_perplexity", "val_token_accuracy")})
        final.update(callbacks.peak_memory())
        if self.attention is not None and self.attention.rows:
            self.attention.publish(self.run_dir)
            final["attention_log_rows"] = self.attention.rows
        self.ctx.summary(callbacks.without_nan(final))
        if not self.ctx.is_main:  # the evaluation after training is rank 0's alone
            return
        # Answers, timing, lm-eval and ROUGE/BLEU for the final model: a judge job
        # comparing this arm with another reads the stored answers.
        hook.evaluate_after_training(self.ctx, self.trainer.model, self.tokenizer, validation=self.validation)


def collator(tokenizer, *, packing: bool):
    """Padded micro-batches, or with ``packing`` one row per micro-batch: its examples end to
    end, ``position_ids`` restarting at each and no attention mask, from which transformers'
    masking builds a block-diagonal causal mask (no attention across examples). The label at
    each example's first position becomes -100, which a causal model never predicts anyway,
    so a packed batch has the same loss as the padded one, without the pad tokens. The model
    must run without a key/value cache (``config.use_cache = False``, as ``_setup_model``
    sets it): with one, transformers does not look for packed rows."""
    if packing:
        return transformers.DataCollatorWithFlattening(return_position_ids=True, separator_id=tokenization.IGNORE)
    return transformers.DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=tokenization.IGNORE, return_tensors="pt")


def run(ctx, *, probe: bool = True) -> None:
    recipe = SFTRecipe(ctx.spec, ctx, probe=probe)
    recipe.setup()
    recipe.train()

