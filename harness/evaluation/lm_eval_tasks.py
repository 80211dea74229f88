"""lm-evaluation-harness tasks on a model object, with figures flattened for the summaries table.

The model is wrapped as ``HFLM(pretrained=<model>, tokenizer=<tokenizer>)``, so a job evaluates
the model it just trained without saving and reloading it. Task files that ship with gridlab
(``tasks/``: ``gridlab_heldout_perplexity``, perplexity on the job's held-out split) load through
``TaskManager(include_defaults=False, include_path=...)``, which skips lm-eval's default index
(about 13 s); any other name is looked up in lm-eval's own tasks, whose data come from the hub.

Figures are named ``<task alias>.<metric>``, e.g. ``heldout.word_perplexity``.
"""

from __future__ import annotations

import contextlib

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.data import template
from harness.data.conversation import Conversation
from harness.evaluation.errors import EvaluationError

TASKS_DIR = Path(__file__).with_name("tasks")
HELDOUT = "gridlab_heldout_perplexity"


def local_tasks(include_path: Sequence[str | Path] = ()) -> list[str]:
    """Task names defined by the shipped task files and ``include_path``."""
    return sorted(_manager(include_path, {}).all_subtasks)


def write_heldout(conversations: Sequence[Conversation], path: str | Path, *, eos: str = "") -> Path:
    """The held-out conversations as rendered text, one ``{"text": ...}`` per line."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as f:
        for conversation in conversations:
            f.write(json.dumps({"text": template.render(conversation, eos)}) + "\n")
    return path


def run(
    model,
    tokenizer,
    tasks: Sequence[str],
    *,
    heldout: Sequence[Conversation] | str | Path | None = None,
    include_path: Sequence[str | Path] = (),
    batch_size: int = 8,
    limit: int | float | None = None,
) -> dict[str, float]:
    """Run ``tasks`` on ``model``; returns ``{"<alias>.<metric>": value}`` for numeric results.

    ``heldout``: conversations (or a JSON Lines file of ``{"text": ...}``) for the held-out
    perplexity task."""
    if not tasks:
        return {}
    with tempfile.TemporaryDirectory(prefix="gridlab-lm-eval-") as tmp:
        metadata = {}
        if HELDOUT in tasks:
            if heldout is None:
                raise EvaluationError(f"task {HELDOUT} needs the held-out split", "pass heldout= (conversations or a .jsonl file)")
            metadata["heldout_path"] = str(
                heldout if isinstance(heldout, (str, Path)) else write_heldout(heldout, Path(tmp) / "heldout.jsonl")
            )
        manager = _manager(include_path, metadata)
        unknown = [t for t in tasks if t not in manager.all_tasks]
        if unknown:
            manager = _manager(include_path, metadata, defaults=True)
            missing = [t for t in unknown if t not in manager.all_tasks]
            if missing:
                raise EvaluationError(
                    f"unknown lm-eval task(s): {', '.join(missing)}",
                    f"use a task lm-eval knows, or a local one ({', '.join(local_tasks(include_path))})",
                )
        results = _evaluate(model, tokenizer, list(tasks), manager, batch_size=batch_size, limit=limit)
    return flatten(results)


@contextlib.contextmanager
def _quiet():
    """lm-eval on a worker's terminal, silenced where it would tear the ``gridlab work``
    progress display: its progress bars (passed ``disable=False`` explicitly, so
    ``TQDM_DISABLE`` does not reach them) and its ``git describe``, which stamps lm-eval's own
    results file with the caller's commit and, outside a checkout, prints git's "fatal: not a
    git repository". gridlab stores figures, not that file. Warnings and errors still show.

    Its ``add_env_info`` is skipped too: it runs torch's ``collect_env``, which starts ``pip list``
    and a dozen other programs on every call (0.35 s a call here, more than a tiny cell's whole
    evaluation) for a text that lands in the same unused results file; the worker records the
    environment once, as provenance (jobs/provenance.py)."""
    import tqdm as tqdm_module
    from lm_eval import evaluator
    from lm_eval.api import task
    from lm_eval.models import huggingface

    def silent(*args, **kwargs):
        return tqdm_module.tqdm(*args, **{**kwargs, "disable": True})

    patched = [(evaluator, "get_git_commit_hash", lambda: None), (evaluator, "add_env_info", lambda results: None),
               (huggingface, "tqdm", silent), (task, "tqdm", silent)]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patched]
    for module, name, value in patched:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in originals:
            setattr(module, name, value)


def flatten(results: dict) -> dict[str, float]:
    """lm-eval's ``results`` section as ``{"<alias>.<metric>": value}`` (numbers only, filters
    other than ``none`` kept in the name, standard errors left out)."""
    figures: dict[str, float] = {}
    for task, values in results.items():
        alias = str(values.get("alias", task)).strip()
        for key, value in values.items():
            metric, _, filt = key.partition(",")
            if not filt or metric.endswith("_stderr") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            name = f"{alias}.{metric}" if filt == "none" else f"{alias}.{metric}.{filt}"
            figures[name] = float(value)
    return figures


def _manager(include_path: Sequence[str | Path], metadata: dict, *, defaults: bool = False):
    from lm_eval.tasks import TaskManager

    paths = [str(TASKS_DIR), *map(str, include_path)]
    return TaskManager(include_defaults=defaults, include_path=paths, metadata=metadata)


def _evaluate(model, tokenizer, tasks: list[str], manager, *, batch_size: int, limit):
    import lm_eval

    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    device = next(model.parameters()).device
    was_training = model.training
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="seq2seq" if seq2seq else "causal",
              batch_size=batch_size, device=str(device))
    try:
        with _quiet():
            out = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, bootstrap_iters=0,
                                          log_samples=False, limit=limit,
                                          # leave the caller's random state alone (nothing here samples)
                                          random_seed=None, numpy_random_seed=None, torch_random_seed=None)
    finally:
        model.train(was_training)
    # Non-finite figures are kept: a diverged model's infinite perplexity is a finding.
    return out["results"] if out else {}
