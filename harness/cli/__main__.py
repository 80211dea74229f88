"""``python -m harness.cli``: the ``gridlab`` command."""

from harness.cli import main

main()
