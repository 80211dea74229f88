"""The experiments a grid cell can run, by name.

Each experiment module has ``PARAMS`` (what a grid may set, see :mod:`harness.params`)
and ``run(ctx)``; heavy imports (torch, transformers) happen inside ``run`` so that
validating a grid file stays fast. :func:`run` is the worker's runner
(``harness.experiments:run``).
"""

from __future__ import annotations

import functools
import importlib
import logging
import warnings
from types import ModuleType

from harness import params

#: experiment name -> module
REGISTRY = {
    "tiny_lm": "harness.experiments.tiny_lm",
    "sft": "harness.experiments.sft",
    "generate": "harness.experiments.generate",
    "judge": "harness.experiments.judge",
    "pretrain": "harness.experiments.pretrain",
}


def load(name: str) -> ModuleType:
    if name not in REGISTRY:
        raise params.InvalidSpec(
            f"unknown experiment {name!r}",
            f"use one of: {', '.join(sorted(REGISTRY))}",
        )
    return importlib.import_module(REGISTRY[name])


#: Libraries whose notices a quiet worker keeps to errors only.
LIBRARIES = ("transformers", "peft", "datasets", "accelerate", "lm_eval", "lm-eval", "llm_blender", "torch")


#: The runner the worker calls, by import path (the ranks of a job run as N ranks call it too).
RUNNER = "harness.experiments:run"


def ranks_for(experiment: ModuleType, spec: dict) -> int:
    """How many ranks (processes on one node, a GPU each where there are GPUs) a job of
    ``experiment`` with the complete ``spec`` runs as: the experiment's own ``ranks(spec)``
    where it has one (sft: its ``ranks`` setting), else 1. The one place that says it: per-cell
    resources (a grid's GPUs per cell) decide here."""
    count = getattr(experiment, "ranks", None)
    return max(1, int(count(spec))) if count is not None else 1


def run(ctx) -> None:
    """The worker's runner: run the experiment the job names, in this process, or as N ranks
    that the worker launches (:mod:`jobs.ranks`) when the job needs more than one; each rank
    then comes back here with its own context (``ctx.world_size`` > 1) and runs it."""
    _library_output(verbose=logging.getLogger().getEffectiveLevel() <= logging.INFO)
    experiment = load(ctx.job.experiment)
    # Settings the stored spec leaves out (neutral ones at their default, or ones added to the
    # experiment after the job was enqueued) get their defaults, so ctx.spec is complete.
    ctx.spec.update(params.resolve(experiment.PARAMS, ctx.spec))
    count = ranks_for(experiment, ctx.spec)
    if count > 1 and ctx.world_size == 1:
        from jobs import ranks

        ranks.launch(ctx, count, runner=RUNNER)
        return
    experiment.run(ctx)


@functools.cache
def _library_output(*, verbose: bool) -> None:
    """Once per worker process: unless the worker logs at INFO (``gridlab work -v``, Slurm
    workers' log files), the ML libraries' notices and deprecation warnings stay off the
    terminal, where every job would repeat them under the progress display. Their errors
    still show, and a job's own failure is stored with its attempt either way."""
    if verbose:
        return
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()  # transformers 5 logs through its own handler
    except ImportError:
        pass
    pattern = "|".join(n.replace("-", "_") for n in LIBRARIES)
    warnings.filterwarnings("ignore", category=FutureWarning, module=rf"({pattern})(\.|$)")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=rf"({pattern})(\.|$)")
