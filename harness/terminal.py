"""The consoles every ``gridlab`` command prints through.

Piped or logged output (not a terminal, no ``COLUMNS``) gets 200-column lines rather than
tables cut to 80 columns; errors go to stderr.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
console = Console(width=WIDTH)
err_console = Console(stderr=True)
