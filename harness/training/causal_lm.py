"""Training a small causal LM from scratch on a corpus: the testbed's pretraining and the
ReLU-vs-GELU study (Jha and Reagen 2024, arXiv 2410.09637) in miniature.

The paper's setting, scaled down: a GPT-2-shaped decoder (or GPT-NeoX) trained from scratch on
Python code with a 128-token context, optionally without its block norms (``ln_1``, ``ln_2``;
the final norm is kept or not, separately), with GELU or ReLU in the MLP. A plain loop in
nanoGPT's style (the corpus is one token stream; each step reads ``batch_size`` random windows
of ``seq_len`` tokens): AdamW, linear warm-up then cosine decay (transformers' schedule),
gradient clipping, and with ``fp16`` float16 autocast with a gradient scaler, so that the
instabilities of norm-free models can show.

What it records, through the job context:

- every ``log_every`` steps: loss, grad norm, learning rate, token accuracy (TRL's
  ``mean_token_accuracy``: the mean over the micro-batches of the window), step time, tokens/s;
- every ``entropy_every`` steps, on that step's own training batch (fixed length, no padding):
  attention entropy per layer and head, plain and normalised by its maximum, and NaN counts in
  the attention matrices per layer and head (:mod:`harness.training.diagnostics`), one row per
  layer in the attention log (the database's ``attention_rows`` and the run folder's file),
  per-layer means as metrics;
- every ``eval_every`` steps and at the end: validation loss as the pooled token NLL over fixed
  validation windows (the same for every cell), its perplexity, token accuracy;
- when the loss goes non-finite: the failing batch is run again with hooks on every block and the
  attention matrices kept, and its per-layer non-finite counts (``diverged/...`` metrics and
  ``diverged`` rows of the attention log) are stored before the job ends as ``diverged``.

A checkpoint (``state.pt``: model, optimizer, schedule, scaler, data RNG and step; plus the
attention log so far) is made the job's through ``ctx.checkpoint``; a resumed attempt continues
from exactly that state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import transformers

from harness.data import corpus as corpus_module
from harness.models import families, surgery, tiny
from harness.params import resolve
from harness.training import attention_log, causal_lm_settings, diagnostics

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
EVAL_SEED = 10_000

_CONFIG = {
    "gpt2": lambda s, act: {"n_layer": s["layers"], "n_embd": s["hidden"], "n_head": s["heads"],
                            "n_positions": max(256, s["seq_len"]), "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                            "attn_pdrop": 0.0, **({"activation_function": act} if act else {})},
    "gpt_neox": lambda s, act: {"num_hidden_layers": s["layers"], "hidden_size": s["hidden"],
                                "num_attention_heads": s["heads"], "intermediate_size": 4 * s["hidden"],
                                "max_position_embeddings": max(256, s["seq_len"]), **({"hidden_act": act} if act else {})},
}
_ACTIVATION = {"keep": None, "gelu": "gelu_new", "relu": "relu"}


def build_model(spec: dict[str, Any], tokenizer) -> tuple[transformers.PreTrainedModel, families.Family, dict]:
    """A freshly initialised model of the spec's family and shape (seeded), with its block or
    final norms removed as the spec says; (model, family, surgery figures)."""
    family = tiny.TINY[spec["model"]]
    special = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
               "eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.bos_token_id}
    config = getattr(transformers, tiny._CONFIG_CLASSES[family.name])(
        **_CONFIG[family.name](spec, _ACTIVATION[spec["activation"]]), **special)
    config._attn_implementation = "eager"  # attention probabilities for the probes, every step alike
    with torch.random.fork_rng():
        torch.manual_seed(spec["seed"])
        model = getattr(transformers, tiny._MODEL_CLASSES[family.name])(config)
    model.loss_type = "ForCausalLM"
    removed = {}
    if spec["block_norms"] == "none":
        removed["block_norms_removed"] = len(surgery.swap_norm(model, "none", roles=("attn", "ffn")).replaced)
    if spec["final_norm"] == "none":
        removed["final_norms_removed"] = len(surgery.swap_norm(model, "none", roles=("final",)).replaced)
    return model, family, removed


@dataclasses.dataclass
class Result:
    model: transformers.PreTrainedModel
    tokenizer: Any
    summary: dict[str, float]
    info: dict[str, Any]


class CausalLMRun:
    """One training run: ``setup()`` then ``train()`` (see the module)."""

    def __init__(self, spec: dict[str, Any], ctx) -> None:
        self.spec = spec
        self.ctx = ctx
        self.step = 0
        self.summaries: dict[str, float] = {}

    # --- set-up -------------------------------------------------------------------

    def setup(self) -> "CausalLMRun":
        s = self.spec
        self.tokenizer = tiny.build_tokenizer()
        self.corpus = corpus_module.build(s["corpus"], s["corpus_chars"])
        self.train_ids = corpus_module.token_stream(self.corpus.train, self.tokenizer)
        self.val_ids = corpus_module.token_stream(self.corpus.validation, self.tokenizer)
        self.model, self.family, removed = build_model(s, self.tokenizer)
        self.summaries.update(removed, corpus_chars=self.corpus.chars, train_tokens=len(self.train_ids),
                              val_tokens=len(self.val_ids), params=sum(p.numel() for p in self.model.parameters()))
        self.optimizer = torch.optim.AdamW(self._parameter_groups(), lr=s["lr"], betas=(0.9, 0.95))
        self.schedule = transformers.get_cosine_schedule_with_warmup(self.optimizer, s["warmup_steps"], s["steps"])
        self.scaler = torch.amp.GradScaler("cpu" if not torch.cuda.is_available() else "cuda", enabled=s["fp16"])
        self.generator = torch.Generator().manual_seed(s["seed"])
        resume = getattr(self.ctx, "resume_from", None)
        if resume is not None:
            state = torch.load(Path(resume) / STATE_FILE, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            self.scaler.load_state_dict(state["scaler"])
            self.generator.set_state(state["data_rng"])
            self.step = int(state["step"])
        self.attention = attention_log.AttentionLog(self.ctx.attempt_dir, resume_from=resume,
                                                    resume_step=getattr(self.ctx, "resume_step", None),
                                                    store=self.ctx.log_attention)
        self.val_windows = self._validation_windows()
        return self

    def _parameter_groups(self):
        decay, other = [], []
        for p in self.model.parameters():
            (decay if p.dim() >= 2 else other).append(p)  # no decay on norms, biases, DyT alphas
        return [{"params": decay, "weight_decay": self.spec["weight_decay"]}, {"params": other, "weight_decay": 0.0}]

    def _validation_windows(self) -> torch.Tensor:
        """The same windows for every cell of a corpus: evenly spaced over the validation stream."""
        n = self.spec["eval_batches"] * self.spec["batch_size"]
        length = self.spec["seq_len"]
        last = len(self.val_ids) - length
        if last <= 0:
            raise ValueError(f"the validation text has {len(self.val_ids)} tokens, fewer than seq_len={length}; "
                             "raise corpus_chars")
        starts = torch.linspace(0, last, n).long()
        return torch.stack([self.val_ids[i : i + length] for i in starts.tolist()])

    # --- training -----------------------------------------------------------------

    def _batch(self) -> torch.Tensor:
        s = self.spec
        starts = torch.randint(0, len(self.train_ids) - s["seq_len"], (s["batch_size"],), generator=self.generator)
        return torch.stack([self.train_ids[i : i + s["seq_len"]] for i in starts.tolist()])

    def _autocast(self):
        if not self.spec["fp16"]:
            return nullcontext()
        return torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.float16)

    def train(self) -> Result:
        from jobs.errors import Diverged, Interrupted

        s = self.spec
        self.ctx.summary(self.summaries)
        self.model.train()
        window = {"loss": 0.0, "accuracy": 0.0, "n": 0, "time": 0.0}
        started = time.perf_counter()
        while self.step < s["steps"]:
            if self.ctx.should_stop():
                self._save()
                raise Interrupted(self.ctx.stop_reason, self.ctx.stop_outcome)
            t0 = time.perf_counter()
            x = self._batch()
            number = self.step + 1
            probe = s["entropy_every"] > 0 and (number % s["entropy_every"] == 0 or number == 1)
            with self._autocast():
                out = self.model(input_ids=x, labels=x, output_attentions=probe)
            loss = out.loss
            value = float(loss.detach())
            if probe:
                rows = diagnostics.attention_rows(out.attentions, causal=True)
                self.attention.add(number, "train", rows)
                self.ctx.log(number, diagnostics.row_metrics(rows))
            if not math.isfinite(value):
                self._probe_divergence(x, number, value)
                raise Diverged(number, f"loss={value}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), s["max_grad_norm"]))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            self.step = number
            window["loss"] += value
            window["accuracy"] += _accuracy(out.logits.detach(), x)
            window["n"] += 1
            window["time"] += time.perf_counter() - t0
            if self.step % s["log_every"] == 0 or self.step == s["steps"]:
                n = window["n"]
                self.ctx.log(self.step, {"loss": window["loss"] / n, "token_accuracy": window["accuracy"] / n,
                                         "grad_norm": grad_norm, "learning_rate": self.schedule.get_last_lr()[0],
                                         "step_time_s": window["time"] / n,
                                         "tokens_per_s": n * x.numel() / window["time"] if window["time"] else 0.0})
                window = {"loss": 0.0, "accuracy": 0.0, "n": 0, "time": 0.0}
            if s["eval_every"] and self.step % s["eval_every"] == 0 and self.step < s["steps"]:
                self.ctx.log(self.step, self.evaluate())
            if self.step % s["checkpoint_every"] == 0 and self.step < s["steps"]:
                self._save()
        train_runtime = time.perf_counter() - started
        figures = self.evaluate()
        self.ctx.log(self.step, figures)
        self._save()
        final = {**self.summaries, **figures, "steps": self.step, "train_runtime_s": train_runtime}
        if self.attention.rows:
            self.attention.publish(self.ctx.run_dir)
            final["attention_log_rows"] = self.attention.rows
            final.update(self._final_probe_summary())
        self.ctx.summary(final)
        info = {"corpus": self.corpus.kind, "corpus_sha256": self.corpus.sha256, "python": self.corpus.python,
                **{k: v for k, v in final.items() if k.startswith("val_")}}
        return Result(self.model, self.tokenizer, final, info)

    def evaluate(self) -> dict[str, float]:
        """Pooled token NLL, its perplexity, and mean token accuracy over the validation windows."""
        was_training = self.model.training
        self.model.eval()
        nll, tokens, accuracy, batches = 0.0, 0, 0.0, 0
        bs = self.spec["batch_size"]
        try:
            with torch.no_grad(), self._autocast():
                for i in range(0, len(self.val_windows), bs):
                    x = self.val_windows[i : i + bs]
                    logits = self.model(input_ids=x).logits.float()
                    shifted, labels = logits[:, :-1], x[:, 1:]
                    nll += float(torch.nn.functional.cross_entropy(shifted.reshape(-1, shifted.shape[-1]),
                                                                   labels.reshape(-1), reduction="sum"))
                    tokens += labels.numel()
                    accuracy += _accuracy(logits, x)
                    batches += 1
        finally:
            self.model.train(was_training)
        loss = nll / tokens
        return {"val_loss": loss, "val_perplexity": math.exp(loss) if loss < 700 else math.inf,
                "val_token_accuracy": accuracy / batches}

    def _probe_divergence(self, x: torch.Tensor, step: int, loss: float) -> None:
        """The failing batch again, with every block's output and the attention matrices counted."""
        self.model.eval()
        with torch.no_grad(), self._autocast(), diagnostics.block_counts(self.model, self.family) as counter:
            out = self.model(input_ids=x, output_attentions=True)
        rows = diagnostics.attention_rows(out.attentions, causal=True)
        self.attention.add(step, "diverged", rows)
        values = {f"diverged/nonfinite/{name}": float(n) for name, n in counter.counts.items()}
        values["diverged/nonfinite/logits"] = float((~torch.isfinite(out.logits)).sum())
        values.update(diagnostics.row_metrics(rows, prefix="diverged/"))
        self.ctx.log(step, values)
        self.attention.publish(self.ctx.run_dir)
        clean = {k: v for k, v in values.items() if math.isfinite(v)}
        self.ctx.summary({**self.summaries, **clean, "diverged_step": float(step),
                          "attention_log_rows": float(self.attention.rows)})
        log.warning("loss %s at step %d; per-block non-finite counts %s", loss, step, counter.counts)

    def _final_probe_summary(self) -> dict[str, float]:
        rows = attention_log.read(self.ctx.run_dir / attention_log.FILE)
        step, last = attention_log.latest(rows, "train")
        out: dict[str, float] = {}
        for r in last:
            out[f"attn_entropy_norm_final/L{r['layer']}"] = sum(r["entropy_norm"]) / len(r["entropy_norm"])
        out["attn_nan_total"] = float(sum(sum(r["nan"]) for r in rows if r["phase"] == "train"))
        heads = [v for r in last for v in r["entropy_norm"]]
        if heads:
            out["attn_overloaded_share_final"] = sum(v >= 0.75 for v in heads) / len(heads)
        return out

    def _save(self) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
                 "data_rng": self.generator.get_state(), "step": self.step}
        staging = Path(self.ctx.attempt_dir) / f"ckpt-{self.step}"
        staging.mkdir(parents=True, exist_ok=True)
        with open(staging / STATE_FILE, "wb") as f:  # through a file: a full disk is an OSError (ENOSPC)
            torch.save(state, f)
            f.flush()
        self.attention.copy_into(staging)
        self.ctx.checkpoint(staging, self.step)


def _accuracy(logits: torch.Tensor, ids: torch.Tensor) -> float:
    predicted = logits[:, :-1].argmax(-1)
    return float((predicted == ids[:, 1:]).float().mean())


# --- without a job: the testbed built on first use ---------------------------------------


class _Offline:
    """What `CausalLMRun` needs of a job context, for a build outside any job: figures go to
    the log every few hundred steps, checkpoints are not kept."""

    def __init__(self, workdir: Path) -> None:
        self.attempt_dir = workdir / "attempt"
        self.run_dir = workdir
        self.resume_from = None
        self.resume_step = None
        self.stop_reason, self.stop_outcome = "stopped", "stopped"
        self._stop = threading.Event()

    def log(self, step: int, values: dict[str, float]) -> None:
        if "val_loss" in values or step % 250 == 0 and "loss" in values:
            log.warning("pretraining step %d: %s", step, {k: round(v, 4) for k, v in values.items()
                                                          if k in ("loss", "val_loss", "tokens_per_s")})

    def log_attention(self, step: int, phase: str, rows: list[dict]) -> None:
        pass  # no database: the attention log's file is all there is

    def summary(self, values: dict[str, float]) -> None:
        pass

    def checkpoint(self, path: Path, step: int) -> Path:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        return path

    def should_stop(self) -> bool:
        return self._stop.is_set()


def train_offline(spec: dict[str, Any]) -> Result:
    with tempfile.TemporaryDirectory(prefix="gridlab-pretrain-") as workdir:
        ctx = _Offline(Path(workdir))
        full = {**resolve(causal_lm_settings.PARAMS, spec), "entropy_every": 0}
        return CausalLMRun(full, ctx).setup().train()

