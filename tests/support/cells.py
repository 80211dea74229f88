"""Stand-ins for the cell processes a device share starts (jobs.pool.DeviceShare's ``target``):
module-level, so a spawned process can import them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def signal_echo(options, index: int) -> None:
    """A cell at work that, on USR2 or SIGTERM, writes ``cell-<index>.<SIGNAL>`` (its pid) into
    ``options.runs_dir`` and exits; ``cell-<index>.ready`` says its handlers are in place."""
    folder = Path(options.runs_dir)

    def on_signal(signum, _frame) -> None:
        (folder / f"cell-{index}.{signal.Signals(signum).name}").write_text(str(os.getpid()))
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR2, on_signal)
    (folder / f"cell-{index}.ready").write_text(str(os.getpid()))
    time.sleep(120)
    raise SystemExit(3)  # never signalled
