"""Run every benchmark in turn (`make bench`). Each prints its own table."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "benchmarks.queue_lifecycle",
    "benchmarks.enqueue_grid",
    "benchmarks.metrics_ingest",
    "benchmarks.cli_startup",
]


def main() -> None:
    for name in BENCHMARKS:
        print(f"\n== {name} ==", flush=True)
        importlib.import_module(name).main([])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
