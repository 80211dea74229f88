"""What a grid's jobs need on disk before they can run offline: derived from their resolved specs.

Each job (every cell, and every judge job a ``compare:`` makes, :func:`harness.enqueue.new_jobs`)
is read with its experiment's defaults filled in, as a worker runs it, and says what it loads:

- ``model``: a hub model (config, tokenizer and weights, one repository), a local
  ``save_pretrained`` directory, a tiny offline model or a pretrained-testbed model (built here);
- ``data``: a hub dataset (``datasets.load_dataset``), one file of a hub dataset repository
  (``hf://datasets/...``), or a local file; the synthetic dataset needs nothing;
- ``prompts``: the prompt file answered after training;
- ``lm-eval``: an lm-eval task's data (the shipped held-out perplexity task reads the job's own
  split, so it needs nothing);
- ``ranker`` and ``backbone``: a judge's PairRM directory and the backbone its ``config.json``
  names (``microsoft/deberta-v3-large`` for llm-blender/PairRM), or tiny-pairrm (built here).

The same piece needed by many jobs is one :class:`Need` (``jobs`` counts them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import experiments, params
from harness.evaluation import pairrm

# Where a need comes from (Need.source).
HUB_MODEL = "hub model"
HUB_DATASET = "hub dataset"
HUB_FILE = "hub file"
LOCAL = "local"
BUILT = "built here"
#: The kinds of need, in the order a table lists them.
KINDS = ("model", "data", "prompts", "lm-eval", "ranker", "backbone")
PAIRRM = pairrm.HUB_NAME  # what `gridlab fetch` downloads into an empty judge.ranker directory
PAIRRM_BACKBONE = "microsoft/deberta-v3-large"  # the backbone PairRM's config.json names


@dataclass(frozen=True)
class Need:
    """One piece of what a grid needs. ``name`` is a hub id, a path or a built-here name;
    ``config``/``splits`` qualify a hub dataset, ``revision``/``filename`` a hub file; ``filename``
    names the task of an lm-eval need and what a ranker directory is downloaded from."""

    kind: str  # model, data, prompts, lm-eval, ranker, backbone
    name: str
    source: str  # HUB_MODEL, HUB_DATASET, HUB_FILE, LOCAL, BUILT
    config: str | None = None
    splits: tuple[str, ...] = ()
    revision: str | None = None
    filename: str | None = None
    jobs: int = 1

    @property
    def key(self) -> tuple:
        return (self.kind, self.name, self.source, self.config, self.splits, self.revision, self.filename)

    @property
    def label(self) -> str:
        """How a table names it."""
        if self.source == HUB_FILE:
            at = f"@{self.revision}" if self.revision else ""
            return f"{self.name}{at}/{self.filename}"
        name = f"{self.name} ({self.config})" if self.source == HUB_DATASET and self.config else self.name
        if self.kind == "lm-eval" and self.filename:  # the task, and the dataset its task file names
            return f"{self.filename}: {name}"
        return name

    @property
    def on_hub(self) -> bool:
        return self.source in (HUB_MODEL, HUB_DATASET, HUB_FILE)


def of_grid(grid) -> list[Need]:
    """Every need of a grid's jobs (cells and judge jobs), in first-use order."""
    from harness import enqueue

    return of_jobs((job.experiment, job.spec) for job in enqueue.new_jobs(grid))


def of_jobs(jobs: Iterable[tuple[str, dict[str, Any]]]) -> list[Need]:
    """The needs of ``(experiment, stored spec)`` pairs, merged: one per piece, with how many jobs need it.
    Experiments gridlab does not know (jobs for another ``--runner``) add none."""
    merged: dict[tuple, Need] = {}
    for experiment, stored_spec in jobs:
        if experiment not in experiments.REGISTRY:
            continue  # a job for another runner (launch --runner): what it loads is that runner's to say
        spec = params.resolve(experiments.load(experiment).PARAMS, stored_spec)
        for need in _of_job(experiment, spec):
            seen = merged.get(need.key)
            merged[need.key] = need if seen is None else replace(seen, jobs=seen.jobs + 1)
    return sorted(merged.values(), key=lambda n: KINDS.index(n.kind))  # stable: first use within a kind


def of_queue(queue, *, in_states: Iterable[str] | None = None) -> list[Need]:
    """The needs of a queue's jobs that have yet to run (pending ones, by default)."""
    from jobs import reports, states

    chosen = list(in_states) if in_states is not None else [states.PENDING]
    # One read per job (the queue's job list carries no specs): fine for the thousands of jobs a
    # launch starts; a query of pending specs in jobs/queries.py would make it one.
    rows = (reports.job(queue.engine, job.id) for job in reports.jobs(queue.engine, in_states=chosen))
    return of_jobs((row.experiment, row.spec) for row in rows if row is not None)


def _of_job(experiment: str, spec: dict[str, Any]) -> list[Need]:
    if experiment == "judge":
        return ranker_needs(spec["ranker"])
    out: list[Need] = []
    if experiment in ("tiny_lm", "pretrain"):
        out.append(Need("model", spec["model"], BUILT))  # built from a config, tokenizer trained here
        return out
    out.append(model_need(spec["model"]))
    if experiment == "sft":
        out += data_needs(spec["dataset"], spec["data_path"])
    elif experiment == "generate" and spec["data"] != "synthetic":
        out += data_needs("alpaca", spec["data"])
    if spec.get("eval_prompts"):
        out.append(Need("prompts", str(spec["eval_prompts"]), LOCAL))
    tasks = [t.strip() for t in str(spec.get("eval_lm_tasks", "")).split(",") if t.strip()]
    out += [lm_eval_need(task) for task in tasks]
    return out


def model_need(name: str) -> Need:
    from harness.models import pretrained, registry, tiny

    if name in tiny.TINY or name in pretrained.TESTBED:
        return Need("model", name, BUILT)
    if name in registry.HUB:
        return Need("model", name, HUB_MODEL)
    return Need("model", name, LOCAL)


def data_needs(dataset: str, data_path: str) -> list[Need]:
    """What an sft cell's data source needs (the synthetic dataset: nothing)."""
    from harness.data import loaders

    if dataset == "synthetic":
        return []
    source = data_path
    if not source:
        from harness.training import recipe  # the one place that says each format's default source

        source = recipe.DEFAULT_SOURCES.get(dataset, "")
        if not source:
            return []  # the job refuses it (no default source); enqueue's checks say so
    if source.startswith(loaders.HUB_FILE_PREFIX):
        repo, revision, filename = loaders.parse_hub_file(source)
        return [Need("data", repo, HUB_FILE, revision=revision, filename=filename)]
    # The loader's own rule (harness.data.loaders._read): an existing path, or anything that does
    # not look like OWNER/NAME, is a local file; the rest is a hub dataset.
    if Path(source).exists() or not loaders._looks_like_hub_name(source):
        return [Need("data", source, LOCAL)]
    return [Need("data", source, HUB_DATASET, splits=("train",))]


def lm_eval_need(task: str) -> Need:
    """An lm-eval task's data: nothing for gridlab's shipped tasks, else the hub dataset its
    task file names (looked up in lm-eval's task index, about 10 s, only for such a task)."""
    from harness.evaluation import lm_eval_tasks

    if task == lm_eval_tasks.HELDOUT or task in _shipped_tasks():
        return Need("lm-eval", task, BUILT)
    entry = _lm_eval_index().get(task)
    cfg = (getattr(entry, "cfg", None) or {}) if entry is not None else {}
    path = cfg.get("dataset_path")
    if not path:
        # a group, a tag, a task whose data a Python function loads, or no such task
        return Need("lm-eval", task, LOCAL)
    splits = tuple(dict.fromkeys(s for s in (cfg.get("test_split"), cfg.get("validation_split")) if s))
    return Need("lm-eval", str(path), HUB_DATASET, config=cfg.get("dataset_name") or None, splits=splits,
                filename=task)


def ranker_needs(ranker: str) -> list[Need]:
    """A judge's ranker, and the backbone it names (from its config.json, or PairRM's when the
    directory is still empty: ``gridlab fetch`` downloads llm-blender/PairRM into it)."""
    if ranker == "tiny-pairrm":
        return [Need("ranker", ranker, BUILT)]
    path = pairrm.resolve(ranker)
    out = [Need("ranker", str(path), LOCAL, filename=PAIRRM)]
    backbone = PAIRRM_BACKBONE
    if (path / "backbone" / "config.json").is_file():
        return out + [Need("backbone", str(path / "backbone"), LOCAL)]
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        backbone = str(config.get("model_name") or PAIRRM_BACKBONE)
    except (OSError, ValueError, AttributeError):
        pass  # no config yet: PairRM's backbone; the ranker's own row says what is wrong
    candidate = Path(backbone).expanduser()
    candidate = candidate if candidate.is_absolute() else path / candidate
    if (candidate / "config.json").is_file():
        return out + [Need("backbone", str(candidate), LOCAL)]
    return out + [Need("backbone", backbone, HUB_MODEL)]


_index_cache: dict[str, Any] = {}


def _lm_eval_index() -> dict[str, Any]:
    if "index" not in _index_cache:
        from lm_eval.tasks import TaskManager

        _index_cache["index"] = TaskManager(include_defaults=True).task_index
    return _index_cache["index"]


def _shipped_tasks() -> set[str]:
    if "shipped" not in _index_cache:
        from harness.evaluation import lm_eval_tasks

        _index_cache["shipped"] = set(lm_eval_tasks.local_tasks())
    return _index_cache["shipped"]
