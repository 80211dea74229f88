"""The pretrained testbed: tiny models pretrained here, with their norms, named like hub models.

The tiny offline variants (:mod:`harness.models.tiny`) are random-initialised, so swapping their
norms says nothing about what a swap does to a *pretrained* model. The testbed names below are
those same families (with 4 layers and 4 heads) pretrained by the ``pretrain`` experiment's
default recipe (:mod:`harness.experiments.pretrain`) on a corpus every clone has (Python's
standard library and the synthetic instruction text, :mod:`harness.data.corpus`), a few minutes
of CPU each. A grid names them as it names a hub model::

    model: gridlab/tiny-gpt2-pretrained

The registry resolves a testbed name to ``<cache>/pretrained/<name>-<recipe>-py<version>/``, a
``save_pretrained`` directory with ``gridlab_pretrain.json`` (recipe, corpus sha256, Python
version, final validation figures). It is built once per machine: by a ``pretrain`` job with
``publish: true`` (``grids/pretrain.yaml``: logged curves, checkpoints, both models in parallel),
or else by the first job that loads it (under a file lock, so concurrent workers wait for one
build). The directory name carries a hash of the recipe and the Python version, so a changed
recipe or another interpreter's standard library never reuses a stale model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.models import families

log = logging.getLogger(__name__)

#: testbed name -> the ``pretrain`` experiment's ``model`` (the family shape it trains)
TESTBED = {
    "gridlab/tiny-gpt2-pretrained": "tiny-gpt2",
    "gridlab/tiny-pythia-pretrained": "tiny-pythia",
}
FAMILIES = {"tiny-gpt2": families.GPT2, "tiny-pythia": families.GPT_NEOX}
#: The ``pretrain`` settings that decide the weights (the rest is bookkeeping: logging,
#: evaluation, checkpoints, probes).
RECIPE_KEYS = ("model", "layers", "hidden", "heads", "activation", "block_norms", "final_norm", "corpus",
               "corpus_chars", "seq_len", "batch_size", "steps", "lr", "warmup_steps", "weight_decay",
               "max_grad_norm", "seed", "fp16")
INFO_FILE = "gridlab_pretrain.json"


def family_of(name: str) -> families.Family:
    return FAMILIES[TESTBED[name]]


def recipe(name: str) -> dict[str, Any]:
    """The pretrain settings that build testbed model `name`."""
    from harness.training import causal_lm_settings

    defaults = {k: causal_lm_settings.PARAMS[k].default for k in RECIPE_KEYS}
    return {**defaults, "model": TESTBED[name]}


def name_for(spec: dict[str, Any]) -> str | None:
    """The testbed name a pretrain spec builds, or None if its recipe is not a testbed's."""
    mine = {k: spec.get(k) for k in RECIPE_KEYS}
    return next((name for name in TESTBED if {k: recipe(name)[k] for k in RECIPE_KEYS} == mine), None)


def recipe_differences(spec: dict[str, Any]) -> list[str]:
    """Settings of `spec` that differ from its model's testbed recipe."""
    name = next((n for n, m in TESTBED.items() if m == spec.get("model")), None)
    if name is None:
        return ["model"]
    wanted = recipe(name)
    return [k for k in RECIPE_KEYS if spec.get(k) != wanted[k]]


def path(name: str, cache_dir: str | Path | None = None) -> Path:
    from harness.models import tiny

    root = Path(cache_dir) if cache_dir is not None else tiny.default_cache_dir()
    digest = hashlib.sha256(json.dumps(recipe(name), sort_keys=True).encode()).hexdigest()[:10]
    version = "".join(map(str, sys.version_info[:2]))
    return root / "pretrained" / f"{name.replace('/', '--')}-{digest}-py{version}"


def is_built(name: str, cache_dir: str | Path | None = None) -> bool:
    return (path(name, cache_dir) / INFO_FILE).is_file()


def ensure(name: str, cache_dir: str | Path | None = None) -> Path:
    """The directory of testbed model `name`, pretraining it first (minutes) if not built."""
    target = path(name, cache_dir)
    if (target / INFO_FILE).is_file():
        return target
    with _lock(target):
        if (target / INFO_FILE).is_file():  # built by another worker while this one waited
            return target
        from harness.training import causal_lm

        log.warning("pretraining %s (a few minutes, once per machine) into %s", name, target)
        result = causal_lm.train_offline(recipe(name))
        _save(target, name, result.model, result.tokenizer, result.info)
    return target


def publish(name: str, model, tokenizer, info: dict[str, Any], cache_dir: str | Path | None = None) -> Path:
    """Write a trained testbed model where the registry finds it (staged, then renamed into place;
    a model already there is kept)."""
    target = path(name, cache_dir)
    with _lock(target):
        return _save(target, name, model, tokenizer, info)


def _save(target: Path, name: str, model, tokenizer, info: dict[str, Any]) -> Path:
    if (target / INFO_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / INFO_FILE).write_text(json.dumps({"name": name, "recipe": recipe(name), **info}, indent=1),
                                         encoding="utf-8")
        if target.exists():  # a torn earlier attempt (no info file): replace it
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def _lock(target: Path):
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
