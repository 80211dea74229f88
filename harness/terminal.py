"""The consoles every ``gridlab`` command prints through, and its progress bars.

Piped or logged output (not a terminal, no ``COLUMNS``) gets 200-column lines rather than
tables cut to 80 columns; errors go to stderr.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
console = Console(width=WIDTH)
err_console = Console(stderr=True)


def progress(transient: bool = False) -> Progress:
    """A bar with its count and the time elapsed, on ``console`` (``transient``: gone when done)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )
