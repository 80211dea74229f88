"""Prove, offline, that every need of a grid is on this machine and loadable.

Nothing here touches the network: hub pieces are looked up in the Hugging Face caches with
huggingface_hub's own cache functions (``snapshot_download(..., local_files_only=True)``,
``try_to_load_from_cache``), which is what ``HF_HUB_OFFLINE=1`` leaves a job. What "loadable"
means, per kind (loading Pythia-410m's weights would take too long to be a check):

- a model (hub or local directory): its ``config.json`` loads with ``AutoConfig``, its tokenizer
  with ``AutoTokenizer`` (both from the local folder), and its weight files are there
  (``model.safetensors`` or ``pytorch_model.bin``, or every shard an index names);
- a hub dataset: ``datasets``' prepared Arrow cache (what ``load_dataset`` reads offline: the hub
  cache alone is not enough) has a ``dataset_info.json`` naming each split the job reads, and each
  split's Arrow file opens and has a schema;
- one file of a hub dataset repository: the cached file is there and not empty;
- a local data or prompt file: it is there (a prompt file is parsed; ``gridlab enqueue`` already
  reads a local data file whole);
- a PairRM directory: llm-blender's ``config.json`` (``ranker_type: pairranker``) and weights;
  its backbone is checked as a model;
- built here (tiny models, tiny-pairrm, the pretrained testbed, gridlab's own lm-eval task): no
  download; the row says whether it is built yet and what builds it.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from harness.readiness import needs as needs_mod
from harness.readiness.needs import BUILT, HUB_DATASET, HUB_FILE, HUB_MODEL, Need

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class Caches:
    """Where things are looked up: the Hugging Face hub cache, ``datasets``' Arrow cache, gridlab's cache."""

    hub: Path
    datasets: Path
    gridlab: Path

    @classmethod
    def from_env(cls) -> "Caches":
        """As huggingface_hub and datasets resolve them: ``HF_HUB_CACHE``, ``HF_DATASETS_CACHE``,
        else under ``HF_HOME`` (default ``~/.cache/huggingface``); ``GRIDLAB_CACHE`` for gridlab's.
        Read now, not when those libraries were imported."""
        from harness.models import tiny

        def path(value: str) -> Path:
            return Path(os.path.expandvars(os.path.expanduser(value)))

        home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
        hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
        datasets = os.environ.get("HF_DATASETS_CACHE") or os.path.join(home, "datasets")
        return cls(hub=path(hub), datasets=path(datasets), gridlab=tiny.default_cache_dir())


@dataclass(frozen=True)
class Status:
    ok: bool
    state: str  # present, missing, broken, built, builds here, unchecked
    detail: str
    fix: str | None = None  # the command (or step) that fetches it, for one that is not ok


@dataclass(frozen=True)
class Report:
    rows: list[tuple[Need, Status]]
    caches: Caches

    @property
    def ready(self) -> bool:
        return all(status.ok for _, status in self.rows)

    @property
    def missing(self) -> list[tuple[Need, Status]]:
        return [(n, s) for n, s in self.rows if not s.ok]

    def as_json(self, fetch_command: str) -> dict:
        return {
            "ready": self.ready,
            "missing": len(self.missing),
            "fetch": fetch_command if any(n.on_hub or n.kind == "ranker" for n, _ in self.missing) else None,
            "caches": {"hub": str(self.caches.hub), "datasets": str(self.caches.datasets),
                       "gridlab": str(self.caches.gridlab)},
            "needs": [{"kind": n.kind, "name": n.label, "source": n.source, "jobs": n.jobs, "ok": s.ok,
                       "state": s.state, "detail": s.detail, "fix": s.fix} for n, s in self.rows],
        }


def run(needs: list[Need], caches: Caches | None = None) -> Report:
    """Each need with its status (offline)."""
    caches = caches or Caches.from_env()
    return Report([(need, status(need, caches)) for need in needs], caches)


def of_grid(grid, caches: Caches | None = None) -> Report:
    return run(needs_mod.of_grid(grid), caches)


def status(need: Need, caches: Caches) -> Status:
    if need.source == BUILT:
        return _built(need, caches)
    if need.kind == "ranker":
        return _ranker(need)
    if need.source == HUB_MODEL:
        # what fetch downloads: config, tokenizer and safetensors weights, not every format a repository holds
        fix = f"hf download {need.name} --include '*.json' '*.txt' '*.model' '*.safetensors'"
        folder = _cached_snapshot(need.name, caches)
        if folder is None:
            return Status(False, "missing", "not in the Hugging Face cache", fix)
        return _model_folder(folder, fix=fix)
    if need.source == HUB_DATASET:
        return _hub_dataset(need, caches)
    if need.source == HUB_FILE:
        return _hub_file(need, caches)
    if need.kind == "model":
        path = Path(need.name).expanduser()
        if not path.is_dir():
            return Status(False, "missing", f"no directory at {path}", "put the save_pretrained directory there")
        return _model_folder(path, fix="write it again with save_pretrained (model and tokenizer)")
    if need.kind == "prompts":
        return _prompts(need)
    if need.kind == "lm-eval":
        return Status(False, "unchecked", "a group, a tag or a task whose data lm-eval's index does not name",
                      "name its tasks one by one in eval_lm_tasks, or launch with --skip-check")
    return _local_file(need)


# --- one check per kind ---------------------------------------------------------------------


def _cached_snapshot(repo_id: str, caches: Caches, repo_type: str = "model") -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type=repo_type, cache_dir=caches.hub, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


def _model_folder(folder: Path, *, fix: str) -> Status:
    """Config and tokenizer load from ``folder``; its weight files are there."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # transformers raises OSError, ValueError, KeyError...: all mean "not loadable"
        return Status(False, "broken", f"{folder}: config does not load ({_first_line(error)})", fix)
    try:
        transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as error:
        return Status(False, "broken", f"{folder}: tokenizer does not load ({_first_line(error)})", fix)
    weights, problem = weight_files(folder)
    if problem:
        return Status(False, "broken", f"{folder}: {problem}", fix)
    size = sum(f.stat().st_size for f in weights)
    return Status(True, "present", f"{config.model_type} config, tokenizer and {_names(weights)} ({_size(size)})")


def weight_files(folder: Path) -> tuple[list[Path], str | None]:
    """The weight files ``from_pretrained`` would read in ``folder``, or what is missing."""
    for index_name in WEIGHT_INDEXES:
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError):
                return [], f"{index_name} is not a weight index"
            absent = [s for s in shards if not (folder / s).is_file()]
            if absent:
                return [], f"{len(absent)} of {len(shards)} weight shards missing (first: {absent[0]})"
            return [folder / s for s in shards], None
    present = [folder / f for f in WEIGHT_FILES if (folder / f).is_file() and (folder / f).stat().st_size > 0]
    if not present:
        return [], f"no weights ({' or '.join(WEIGHT_FILES)})"
    return present[:1], None


def dataset_cache_dirs(need: Need, caches: Caches) -> list[Path]:
    """The prepared folders ``datasets`` would load ``need`` from offline (newest first): its cache's
    ``OWNER___NAME/CONFIG/VERSION/HASH`` (datasets' CachedDatasetModuleFactory and its cache builder)."""
    from datasets.naming import camelcase_to_snakecase

    parts = need.name.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = caches.datasets / "___".join(parts)
    config = glob.escape(need.config or "default")
    found = [Path(p) for p in glob.glob(os.path.join(glob.escape(str(root)), config, "*", "*")) if os.path.isdir(p)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _hub_dataset(need: Need, caches: Caches) -> Status:
    fix = _load_dataset_command(need)
    folders = dataset_cache_dirs(need, caches)
    if not folders:
        return Status(False, "missing", "not in datasets' Arrow cache", fix)
    problem = ""
    for folder in folders:
        problem = _prepared_problem(folder, need.splits)
        if not problem:
            return Status(True, "present", f"Arrow cache, split{'s' if len(need.splits) != 1 else ''} "
                          f"{', '.join(need.splits) or '(any)'} ({folder.relative_to(caches.datasets)})")
    return Status(False, "broken", f"{folders[0]}: {problem}", fix)


def _prepared_problem(folder: Path, splits: tuple[str, ...]) -> str:
    import pyarrow as pa

    try:
        info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
        known = set(info.get("splits") or {})
    except (OSError, ValueError, AttributeError):
        return "no readable dataset_info.json"
    for split in splits or tuple(known)[:1]:
        if split not in known:
            return f"no split {split!r} (has {', '.join(sorted(known)) or 'none'})"
        files = sorted(glob.glob(str(folder / f"*-{glob.escape(split)}.arrow")) +
                       glob.glob(str(folder / f"*-{glob.escape(split)}-*-of-*.arrow")))
        if not files:
            return f"split {split!r} has no Arrow file"
        try:
            with pa.memory_map(files[0]) as source:
                pa.ipc.open_stream(source).schema  # noqa: B018 (reading the schema is the proof)
        except (OSError, pa.ArrowInvalid) as error:
            return f"{Path(files[0]).name} does not open ({_first_line(error)})"
    return ""


def _hub_file(need: Need, caches: Caches) -> Status:
    from huggingface_hub import try_to_load_from_cache

    revision = f" --revision {need.revision}" if need.revision else ""
    fix = f"hf download {need.name} {need.filename} --repo-type dataset{revision}"
    found = try_to_load_from_cache(need.name, need.filename, cache_dir=caches.hub, revision=need.revision,
                                   repo_type="dataset")
    if not isinstance(found, str):
        return Status(False, "missing", "not in the Hugging Face cache", fix)
    path = Path(found)
    if not path.is_file() or path.stat().st_size == 0:
        return Status(False, "broken", f"{path} is empty or a broken link", fix)
    return Status(True, "present", f"{_size(path.stat().st_size)} in the Hugging Face cache")


def _local_file(need: Need) -> Status:
    path = Path(need.name).expanduser()
    if not path.is_file():
        return Status(False, "missing", f"no file at {path}", "put the file there (gridlab fetch does not make local files)")
    return Status(True, "present", f"local file, {_size(path.stat().st_size)}")


def _prompts(need: Need) -> Status:
    from harness.evaluation import prompts
    from harness.evaluation.errors import PromptFileError

    try:
        loaded = prompts.load(need.name)
    except PromptFileError as error:
        return Status(False, "missing", str(error.what), "put the MT-Bench-format file there")
    return Status(True, "present", f"{len(loaded.questions)} questions, {loaded.n_answers} answers to give")


def _ranker(need: Need) -> Status:
    from harness.evaluation import pairrm
    from harness.evaluation.errors import RankerError

    fix = f"hf download {needs_mod.PAIRRM} --local-dir {need.name}"
    try:
        config = pairrm._ranker_config(Path(need.name))  # the loader's own checks, short of loading
    except RankerError as error:
        return Status(False, "missing", str(error.what), fix)
    return Status(True, "present", f"llm-blender {config.get('ranker_type')} config and weights")


def _built(need: Need, caches: Caches) -> Status:
    from harness.models import pretrained, tiny

    if need.kind == "lm-eval":
        return Status(True, "builds here", "gridlab's own task: reads the job's held-out split")
    if need.kind == "ranker":
        from harness.evaluation import tiny_ranker

        built = (caches.gridlab / "tiny" / f"{tiny_ranker.NAME}-v{tiny_ranker.VERSION}" / "model.safetensors").is_file()
        return Status(True, "built" if built else "builds here",
                      "random verdicts, for demos (built offline in seconds on first use)")
    if need.name in pretrained.TESTBED:
        if pretrained.is_built(need.name, caches.gridlab):
            return Status(True, "built", f"pretrained testbed in {pretrained.path(need.name, caches.gridlab)}")
        return Status(True, "builds here", "pretrained testbed: minutes of CPU on first use (one job builds it under "
                      "a file lock, the others wait), or first: gridlab enqueue grids/pretrain.yaml && gridlab work")
    if need.name in tiny.TINY:
        built = (caches.gridlab / "tiny" / f"{need.name}-v{tiny.VERSION}" / "config.json").is_file()
        return Status(True, "built" if built else "builds here",
                      "tiny offline model" + ("" if built else ": built in seconds on first use, no network"))
    return Status(True, "builds here", "built from a config when the job runs")


# --- the table ---------------------------------------------------------------------------------


def table(report: Report) -> Table:
    """Each need: what, name, jobs, state, detail (fits 100 columns; long names fold)."""
    ok = sum(1 for _, s in report.rows if s.ok)
    caches = report.caches
    result = Table(title=f"Offline readiness: {ok} of {len(report.rows)} ready", title_justify="left",
                   caption=escape(f"looked up offline in {caches.hub} (hub), {caches.datasets} (datasets), "
                                  f"{caches.gridlab} (gridlab)"), caption_justify="left")
    result.add_column("need")
    result.add_column("name", overflow="fold", ratio=2)
    result.add_column("jobs", justify="right")
    result.add_column("state")
    result.add_column("detail", overflow="fold", ratio=3)
    for need, status in report.rows:
        style = "green" if status.state in ("present", "built") else ("yellow" if status.ok else "red")
        result.add_row(f"{need.kind}\n[dim]{need.source}[/]", escape(need.label), str(need.jobs),
                       f"[{style}]{status.state}[/]", escape(status.detail))
    return result


def fix_lines(report: Report, fetch_command: str) -> list[str]:
    """What to run for the missing pieces: ``gridlab fetch`` for everything the hub has, then each one's own command."""
    missing = report.missing
    if not missing:
        return []
    lines = []
    if any(n.on_hub or n.kind == "ranker" for n, _ in missing):
        lines.append(f"Fetch them where the hub is reachable: {fetch_command}   (or one by one:)")
    lines += [f"  {n.label}: {s.fix}" for n, s in missing if s.fix]
    return lines


def _load_dataset_command(need: Need) -> str:
    config = f", {need.config!r}" if need.config else ""
    return f"python -c \"import datasets; datasets.load_dataset({need.name!r}{config})\""


def _names(files: list[Path]) -> str:
    return files[0].name if len(files) == 1 else f"{len(files)} weight shards"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
