"""The experiments a grid cell can run, by name.

Each experiment module has ``PARAMS`` (what a grid may set, see :mod:`harness.params`)
and ``run(ctx)``; heavy imports (torch, transformers) happen inside ``run`` so that
validating a grid file stays fast. :func:`run` is the worker's runner
(``harness.experiments:run``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from db.errors import GridlabError

#: experiment name -> module
REGISTRY = {
    "tiny_lm": "harness.experiments.tiny_lm",
    "sft": "harness.experiments.sft",
    "generate": "harness.experiments.generate",
    "judge": "harness.experiments.judge",
}


def load(name: str) -> ModuleType:
    if name not in REGISTRY:
        raise GridlabError(
            f"unknown experiment {name!r}",
            f"use one of: {', '.join(sorted(REGISTRY))}",
        )
    return importlib.import_module(REGISTRY[name])


def run(ctx) -> None:
    """The worker's runner: run the experiment the job names."""
    load(ctx.job.experiment).run(ctx)
