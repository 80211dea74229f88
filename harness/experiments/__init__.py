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


def run(ctx) -> None:
    """The worker's runner: run the experiment the job names."""
    _library_output(verbose=logging.getLogger().getEffectiveLevel() <= logging.INFO)
    experiment = load(ctx.job.experiment)
    # Settings the stored spec leaves out (neutral ones at their default, or ones added to the
    # experiment after the job was enqueued) get their defaults, so ctx.spec is complete.
    for name, value in params.defaults(experiment.PARAMS).items():
        ctx.spec.setdefault(name, value)
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
