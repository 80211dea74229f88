"""Tiny runners for queue tests: they run in worker processes, so they live in a module."""

from __future__ import annotations

import os
import time


def noop(ctx) -> None:
    """Log one metric and finish."""
    ctx.log(1, {"work": float(ctx.job.id)})


def slow(ctx) -> None:
    """Sleep per step, stopping cleanly when asked (for stop/lease tests)."""
    from jobs.errors import Interrupted

    for step in range(int(ctx.spec.get("steps", 50))):
        if ctx.should_stop():
            raise Interrupted(ctx.stop_reason, ctx.stop_outcome)
        ctx.log(step, {"x": float(step)})
        time.sleep(float(ctx.spec.get("delay", 0.05)))


def flaky(ctx) -> None:
    """Fail on the first attempt, succeed on later ones."""
    if ctx.attempt == 1:
        raise RuntimeError(f"simulated failure in pid {os.getpid()}")
    ctx.log(1, {"ok": 1.0})


def resumable(ctx) -> None:
    """A deterministic, checkpointing job for fault tests: step s of job i logs
    value i + s/1000, sleeping ``delay`` per step; it checkpoints (an atomic JSON file)
    every 2 steps and resumes from its newest checkpoint."""
    import json

    from jobs.errors import Interrupted

    steps, delay, i = int(ctx.spec.get("steps", 4)), float(ctx.spec.get("delay", 0.01)), int(ctx.spec["i"])
    step = json.loads((ctx.resume_from / "state.json").read_text())["step"] if ctx.resume_from else 0
    while step < steps:
        if ctx.should_stop():
            raise Interrupted(ctx.stop_reason, ctx.stop_outcome)
        time.sleep(delay)
        step += 1
        ctx.log(step, {"value": i + step / 1000})
        if step % 2 == 0:
            save_json(ctx, step)
    ctx.summary({"final": i + steps / 1000})


def save_json(ctx, step: int):
    """A checkpoint of one file, ``state.json``, written in the attempt's folder and handed
    to ``ctx.checkpoint`` (sealed, fenced, recorded)."""
    import json

    staging = ctx.attempt_dir / f"ckpt-{step}"
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "state.json").write_text(json.dumps({"step": step}))
    return ctx.checkpoint(staging, step)


def invalid_input(ctx) -> None:
    """Fails the way a corrupted data file does: the data layer's DataError (``invalid``)."""
    from harness.data.errors import DataError

    raise DataError(f"data file for job {ctx.job.id} is corrupted", "fix the file and retry the job")


def hub_down_once(ctx) -> None:
    """The first attempt's model download fails (ModelUnavailable, ``network``); later ones work."""
    from harness.models.registry import ModelUnavailable

    if ctx.attempt == 1:
        raise ModelUnavailable("could not load 'EleutherAI/pythia-14m' (connection reset)", "retry later")
    ctx.log(1, {"ok": 1.0})


def counting(ctx) -> None:
    """Count ``steps`` steps of ``delay`` seconds, logging each, checkpointing to JSON
    every ``every`` steps and when asked to stop; resumes from the recorded checkpoint.
    Each start is appended to ``starts.log`` in the run folder (step it began from)."""
    import json
    from pathlib import Path

    from jobs.errors import Interrupted

    steps, delay, every = int(ctx.spec.get("steps", 20)), float(ctx.spec.get("delay", 0.2)), int(ctx.spec.get("every", 5))
    step = 0
    if ctx.resume_from:
        step = json.loads((Path(ctx.resume_from) / "state.json").read_text())["step"]
    with open(ctx.run_dir / "starts.log", "a") as f:
        f.write(f"{ctx.attempt} {step} {os.environ.get('SLURM_JOB_ID', '-')}\n")

    def save() -> None:
        save_json(ctx, step)

    while step < steps:
        if ctx.should_stop():
            save()
            raise Interrupted(ctx.stop_reason, ctx.stop_outcome)
        time.sleep(delay)
        step += 1
        ctx.log(step, {"count": float(step)})
        if step % every == 0 and step < steps:
            save()
    ctx.summary({"steps": float(step)})


def stop_after(worker, step: int, runner):
    """Wrap ``runner`` so that ``worker`` is asked to stop (as on SIGTERM or preemption)
    once the job has logged ``step``."""

    def wrapped(ctx) -> None:
        log = ctx.log

        def logging(at, values):
            log(at, values)
            if at == step:
                worker.request_stop("test stop", "preempted")

        ctx.log = logging
        runner(ctx)

    return wrapped


def noisy_failure(ctx) -> None:
    """Print on stdout, stderr and straight to file descriptor 1, then fail 60 frames deep."""
    import sys

    print(f"printed by attempt {ctx.attempt} on stdout")
    print(f"printed by attempt {ctx.attempt} on stderr", file=sys.stderr)
    os.write(1, f"written by attempt {ctx.attempt} to fd 1\n".encode())

    def deeper(depth: int) -> None:
        if depth == 60:
            raise RuntimeError("x" * 200)
        try:
            deeper(depth + 1)
        except RuntimeError as exc:
            raise RuntimeError(f"depth {depth}") from exc if depth % 20 == 0 else exc

    deeper(0)
