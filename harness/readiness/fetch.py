"""Download what a grid needs into the standard caches, where the hub is reachable.

Only the needs :mod:`~harness.readiness.check` finds missing are fetched, each the way the job
will read it, so that the same check then passes offline:

- a hub model or backbone: ``huggingface_hub.snapshot_download`` of its config, tokenizer and
  safetensors weights (``pytorch_model*.bin`` only where the repository has no safetensors),
  into the hub cache;
- one file of a hub dataset repository: ``hf_hub_download`` into the hub cache;
- a hub dataset (an sft source, an lm-eval task's data): ``datasets.load_dataset``, which also
  prepares the Arrow cache that ``datasets`` reads offline (``hf download`` alone does not);
- an empty or incomplete ``judge.ranker`` directory: llm-blender/PairRM downloaded into it.

Local files and built-here pieces are never fetched. The calls to the hub go through one object,
:class:`Hub` (tests give a stand-in that copies from local folders).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.readiness import check as check_mod
from harness.readiness.needs import HUB_DATASET, HUB_FILE, HUB_MODEL, Need

#: A model's files besides its weights: config, generation config, tokenizer (JSON, merges, SentencePiece).
MODEL_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken"]


class Hub:
    """The three calls fetch makes to the Hugging Face hub (each shows its own progress bars)."""

    def snapshot(self, repo_id: str, *, cache_dir: Path | None, allow_patterns: list[str] | None = None,
                 local_dir: Path | None = None) -> str:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, cache_dir=None if local_dir else cache_dir, local_dir=local_dir,
                                 allow_patterns=allow_patterns)

    def file(self, repo_id: str, filename: str, *, revision: str | None, cache_dir: Path) -> str:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision, cache_dir=cache_dir)

    def dataset(self, name: str, config: str | None, *, cache_dir: Path) -> None:
        import datasets

        datasets.load_dataset(name, config, cache_dir=str(cache_dir))


@dataclass
class Fetched:
    fetched: list[Need] = field(default_factory=list)
    failed: list[tuple[Need, str]] = field(default_factory=list)
    report: check_mod.Report | None = None  # the check run after fetching


def run(needs: list[Need], *, caches: check_mod.Caches | None = None, hub: Hub | None = None,
        on_start: Callable[[Need], None] | None = None) -> Fetched:
    """Fetch every missing need that the hub has (going on past failures), then check all of them again."""
    caches = caches or check_mod.Caches.from_env()
    hub = hub or Hub()
    result = Fetched()
    for need, status in check_mod.run(needs, caches).missing:
        if not (need.on_hub or need.kind == "ranker"):
            continue
        if on_start is not None:
            on_start(need)
        try:
            _fetch(need, hub, caches)
        except Exception as error:  # offline, gated, no such repository: each is named in one line at the end
            result.failed.append((need, _reason(error)))
        else:
            result.fetched.append(need)
    result.report = check_mod.run(needs, caches)
    return result


def of_grid(grid, **kwargs) -> Fetched:
    from harness.readiness import needs as needs_mod

    return run(needs_mod.of_grid(grid), **kwargs)


def _fetch(need: Need, hub: Hub, caches: check_mod.Caches) -> None:
    if need.kind == "ranker":
        hub.snapshot(need.filename or "llm-blender/PairRM", cache_dir=None, local_dir=Path(need.name))
    elif need.source == HUB_MODEL:
        folder = Path(hub.snapshot(need.name, cache_dir=caches.hub, allow_patterns=[*MODEL_FILES, "*.safetensors"]))
        if check_mod.weight_files(folder)[1]:  # no safetensors in this repository: its PyTorch weights
            hub.snapshot(need.name, cache_dir=caches.hub, allow_patterns=[*MODEL_FILES, "pytorch_model*.bin"])
    elif need.source == HUB_FILE:
        hub.file(need.name, need.filename, revision=need.revision, cache_dir=caches.hub)
    elif need.source == HUB_DATASET:
        hub.dataset(need.name, need.config, cache_dir=caches.datasets)


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
