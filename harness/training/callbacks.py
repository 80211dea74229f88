"""The Trainer callback that connects a training run to its gridlab job.

- every logging step: loss, grad norm, learning rate (the Trainer's own figures), token
  accuracy (TRL's ``mean_token_accuracy``: the mean over micro-batches), tokens per second,
  step time and peak memory, through ``ctx.log`` (the MetricsWriter batches them and fences each
  batch with the job's lease);
- every evaluation: validation loss (the pooled token NLL over the evaluation set), perplexity
  (its exponential), token accuracy (mean over evaluation batches), and the probes of
  :mod:`harness.training.diagnostics` (attention entropy per layer, plain and normalised, NaN/inf
  counts per layer); the per-head rows go to the job's attention log;
- a NaN or inf loss raises ``jobs.errors.Diverged`` at that step;
- every checkpoint the Trainer writes (into the attempt's own folder) becomes the job's through
  ``ctx.checkpoint``: the metrics logged so far are stored, the lease checked, the directory
  sealed, moved into the run's checkpoints and recorded on the job, older ones pruned
  (:mod:`jobs.checkpoints`; an unsealed directory is not a checkpoint);
- when ``ctx.should_stop()``, the Trainer saves a checkpoint and stops; the recipe then raises
  ``jobs.errors.Interrupted``.

In a job run as N ranks every rank has this callback: the stop and a non-finite loss are agreed
across ranks at each step (:func:`harness.training.distributed.any_rank`), token counts are
summed over ranks before they are logged, and only rank 0's context writes (``ctx.log`` is a
no-op on the others); peak memory is rank 0's.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from harness.models import families
from harness.training import attention_log, diagnostics, distributed
from harness.training.trainer import StepStats
from jobs.errors import Diverged

_TRAINER_FIGURES = {"loss": "loss", "grad_norm": "grad_norm", "learning_rate": "learning_rate"}


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


class GridlabCallback(transformers.TrainerCallback):
    def __init__(self, ctx, stats: StepStats, family: families.Family, *,
                 on_checkpoint: Callable[[Path], None] | None = None, probe: bool = True,
                 attention: attention_log.AttentionLog | None = None) -> None:
        self.ctx = ctx
        self.attention = attention  # the per-layer, per-head probe rows (harness.training.attention_log)
        self.stats = stats
        self.family = family
        self.on_checkpoint = on_checkpoint  # writes extra files into a checkpoint before it is sealed
        self.probe = probe
        self.stopping = False
        self.last_eval: dict[str, float] = {}
        self.last_eval_step: int | None = None
        self._t0 = 0.0
        self._step_time = 0.0
        self._steps = 0

    # --- per step -------------------------------------------------------------------

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        # Reading the loss waits for the step's queued device work (backward, optimizer), so
        # on a GPU the step time below is the step's real time, not its kernel launches'.
        loss = self.stats.take_loss()
        self._step_time += time.perf_counter() - self._t0
        self._steps += 1
        here = loss is not None and not math.isfinite(loss)
        diverged, stop = distributed.any_rank(here, self.ctx.should_stop())
        if diverged:
            if here:
                log_finite(self.ctx, state.global_step, {"loss": loss})
            raise Diverged(state.global_step, f"loss={loss}" if here else "a non-finite loss on another rank")
        if stop:
            self.stopping = True
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:  # evaluation and end-of-training logs are handled elsewhere
            return
        values = {name: float(logs[key]) for key, name in _TRAINER_FIGURES.items() if logs.get(key) is not None}
        accuracy, tokens = self.stats.take_counts(reduce=distributed.sum_tensor_over_ranks)
        (tokens,) = distributed.sum_over_ranks(tokens)
        if accuracy is not None:
            values["token_accuracy"] = accuracy  # TRL's mean_token_accuracy: the mean over micro-batches
        if self._steps:
            values["step_time_s"] = self._step_time / self._steps
            values["tokens_per_s"] = tokens / self._step_time if self._step_time > 0 else 0.0
        values.update(peak_memory())
        self._step_time, self._steps = 0.0, 0
        log_finite(self.ctx, state.global_step, values)

    # --- evaluation -----------------------------------------------------------------

    def on_evaluate(self, args, state, control, metrics=None, model=None, eval_dataloader=None, **kwargs):
        if not metrics or "eval_loss" not in metrics:
            return
        # The pooled token NLL over the whole evaluation set (Trainer's eval_loss is the mean of
        # per-batch means, kept as val_loss_batch_mean); the perplexity is its exponential.
        val_loss = float(metrics.get("eval_nll_pooled", metrics["eval_loss"]))
        values = {"val_loss": val_loss, "val_perplexity": perplexity(val_loss),
                  "val_loss_batch_mean": float(metrics["eval_loss"])}
        if "eval_mean_token_accuracy" in metrics:
            values["val_token_accuracy"] = float(metrics["eval_mean_token_accuracy"])
        if self.probe and model is not None and eval_dataloader is not None:
            batch = next(iter(eval_dataloader), None)
            if batch is not None:
                figures, rows = diagnostics.probe(model, batch, self.family)
                values.update(figures)
                if self.attention is not None:
                    self.attention.add(state.global_step, "eval", rows)
        self.last_eval, self.last_eval_step = values, state.global_step
        log_finite(self.ctx, state.global_step, values)

    # --- checkpoints ----------------------------------------------------------------

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.on_checkpoint is not None and self.ctx.is_main:
            self.on_checkpoint(path)
        if self.attention is not None:
            self.attention.copy_into(path)
        self.ctx.checkpoint(path, state.global_step)


def without_nan(values: dict[str, float]) -> dict[str, float]:
    """``values`` less its NaNs. SQLite stores a NaN as NULL, which the metrics and summaries
    tables refuse, so a NaN would fail the job instead of recording it; infinities are kept, and
    a NaN loss is reported by ``Diverged`` (with its step) instead."""
    return {k: v for k, v in values.items() if not (isinstance(v, float) and math.isnan(v))}


def log_finite(ctx, step: int, values: dict[str, float]) -> None:
    clean = without_nan(values)
    if clean:
        ctx.log(step, clean)


def peak_memory() -> dict[str, float]:
    """Peak accelerator memory (CUDA) or, on CPU, the process's peak resident set, in MiB."""
    if torch.cuda.is_available():
        return {"peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {"peak_rss_mib": rss / (2**20 if sys.platform == "darwin" else 2**10)}
