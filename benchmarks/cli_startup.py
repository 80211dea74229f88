"""CPU of the gridlab commands a researcher types between runs, each as its own process.

    python -m benchmarks.cli_startup [--repeat 5] [--checkout PATH ...]

Each command runs ``--repeat`` times in a fresh process (user + system CPU of the child, as
``resource.getrusage`` counts it; the median is printed). The commands are the ones that only
read a grid or the database, so their cost is Python start-up and imports: ``enqueue --dry-run``
and ``check`` of the demo grid, ``status`` and ``results`` of a database holding it, ``launch
--dry-run``. The last row is what those commands must not import, the training stack
(``import torch, transformers.modeling_utils``), for scale.

With ``--checkout``, each command runs in every checkout given, row by row, interleaved (the
same machine, the same minute): the ratio column compares the last checkout with the first.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMANDS = {
    "enqueue --dry-run (demo grid)": ["enqueue", "{grid}", "--dry-run"],
    "check (demo grid)": ["check", "{grid}"],
    "status": ["status"],
    "results": ["results"],
    "launch --dry-run": ["launch", "--dry-run", "--runs-dir", "{tmp}/runs"],
}
STACK = "import torch, transformers.modeling_utils"


def _cpu_of(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}: {r.stderr.strip().splitlines()[-1:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--checkout", action="append", type=Path, help="a gridlab checkout (default: this one)")
    args = ap.parse_args(argv)
    checkouts = [p.resolve() for p in (args.checkout or [REPO])]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        base = {k: v for k, v in os.environ.items() if k != "GRIDLAB_DB"}
        base.update(GRIDLAB_DB=url, COLUMNS="100", PYTHONWARNINGS="ignore")
        grid = str(REPO / "grids" / "demo.yaml")
        setup = subprocess.run([sys.executable, "-m", "harness.cli", "enqueue", grid], cwd=REPO,
                               env={**base, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
        if setup.returncode != 0:
            raise SystemExit(f"could not enqueue the demo grid: {setup.stderr.strip()}")
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; median CPU s of {args.repeat} runs")
        names = [c.name for c in checkouts]
        print(f"{'command':<32}" + "".join(f"{n[:14]:>15}" for n in names) + (f"{'ratio':>8}" if len(checkouts) > 1 else ""))
        for label, template in [*COMMANDS.items(), ("(the training stack's imports)", None)]:
            samples: dict[Path, list[float]] = {c: [] for c in checkouts}
            for _ in range(args.repeat):
                for checkout in checkouts:  # interleaved: drift of the machine hits every checkout alike
                    env = {**base, "PYTHONPATH": str(checkout)}
                    cmd = ([sys.executable, "-c", STACK] if template is None else
                           [sys.executable, "-m", "harness.cli", *(a.format(grid=grid, tmp=tmp) for a in template)])
                    samples[checkout].append(_cpu_of(cmd, checkout, env))
            medians = [statistics.median(samples[c]) for c in checkouts]
            line = f"{label:<32}" + "".join(f"{m:>15.2f}" for m in medians)
            if len(checkouts) > 1:
                line += f"{medians[-1] / medians[0]:>8.2f}"
            print(line, flush=True)
            rows.append({"command": label, **{str(c): m for c, m in zip(checkouts, medians)}})
    return rows


if __name__ == "__main__":
    main()
