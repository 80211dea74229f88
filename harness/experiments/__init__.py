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
from jobs import resources

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


def ranks_for(experiment: ModuleType, spec: dict, resource_class: str | None = None) -> int:
    """How many ranks (processes on one node, a GPU each where there are GPUs) a job of
    ``experiment`` with the complete ``spec`` and ``resource_class`` (the job's, jobs.resources)
    runs as. The one place that says it: an experiment without ``ranks(spec)`` runs as 1; one
    with it (sft: its ``ranks`` setting) runs as the GPUs of its class when the class has more
    than one and ``ranks`` is left at 1, else as ``ranks`` (an explicit ``ranks`` that disagrees
    with the class is refused when the grid is enqueued: :func:`ranks_problem`)."""
    count = getattr(experiment, "ranks", None)
    if count is None:
        return 1
    asked = max(1, int(count(spec)))
    gpus = resources.from_name(resource_class).gpus if resource_class else None
    return gpus if asked == 1 and gpus is not None and gpus > 1 else asked


def ranks_problem(experiment: ModuleType, given: int | None, resource_class: str) -> str | None:
    """What is wrong with a cell's explicit ``ranks`` (``given``; None: left out) beside the
    GPUs of its class: a class with GPUs runs one rank per GPU, so ranks must equal them. A
    class with no GPUs (or none stated) leaves ranks free (ranks on the CPU, with gloo)."""
    if given is None or getattr(experiment, "ranks", None) is None:
        return None
    gpus = resources.from_name(resource_class).gpus
    if not gpus or given == gpus:
        return None
    return (f"ranks: {given} disagrees with its resource class ({resource_class}), whose {gpus} GPU(s) run "
            f"{gpus} rank(s); leave ranks out (the class's gpus decide) or make the two equal")


def run(ctx) -> None:
    """The worker's runner: run the experiment the job names, in this process, or as N ranks
    that the worker launches (:mod:`jobs.ranks`) when the job needs more than one; each rank
    then comes back here with its own context (``ctx.world_size`` > 1) and runs it."""
    _library_output(verbose=logging.getLogger().getEffectiveLevel() <= logging.INFO)
    experiment = load(ctx.job.experiment)
    # Settings the stored spec leaves out (neutral ones at their default, or ones added to the
    # experiment after the job was enqueued) get their defaults, so ctx.spec is complete.
    ctx.spec.update(params.resolve(experiment.PARAMS, ctx.spec))
    count = ranks_for(experiment, ctx.spec, ctx.job.resource_class)
    if "ranks" in ctx.spec:
        ctx.spec["ranks"] = count  # what it runs as (its class's GPUs, where ranks was left out)
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
