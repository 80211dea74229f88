"""``gridlab check`` (is everything a grid needs on this machine, offline?) and ``gridlab fetch``
(download it, where the hub is reachable). The work is :mod:`harness.readiness`'s.

Exit codes: ``check`` 0 when every need is present, 1 when something is missing (each named with
the command that fetches it), 2 for a mistake (an unreadable grid file). ``fetch`` ends with the
same check and its code, except that a download that failed (the hub unreachable, a gated or
unknown repository) is one ``gridlab: error:`` line naming what could not be fetched, exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape

from db.errors import GridlabError
from harness import grid as grid_mod
from harness import terminal
from harness.readiness import check as check_mod
from harness.readiness import fetch as fetch_mod

console = terminal.console

FORMATS = ("table", "json")


@click.command()
@click.argument("grid_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "format_", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table: for people; json: for scripts (ready, missing, fetch, caches, needs).")
def check(grid_file: Path, format_: str) -> None:
    """Prove offline that everything GRID_FILE's jobs load is on this machine.

    \b
    Models and tokenizers, datasets, the PairRM ranker and its backbone, prompt files and
    lm-eval task data, looked up in the Hugging Face caches (HF_HOME, HF_HUB_CACHE,
    HF_DATASETS_CACHE) without the network. Exit 0: all present; 1: something is missing
    (each missing piece is listed with the command that fetches it); 2: a bad grid file.
    """
    report = check_mod.of_grid(grid_mod.load(grid_file))
    _print(report, grid_file, format_)
    if not report.ready:
        sys.exit(1)


@click.command()
@click.argument("grid_file", type=click.Path(dir_okay=False, path_type=Path))
def fetch(grid_file: Path) -> None:
    """Download what GRID_FILE's jobs need into the Hugging Face caches, then check it.

    \b
    Run it where the hub is reachable (a login node), with the same HF_HOME the compute
    nodes see. Fetches only what `gridlab check` finds missing: hub models (config,
    tokenizer, weights), hub datasets (prepared for offline use by `datasets`), single hub
    files, and llm-blender/PairRM into an empty judge.ranker directory. Exit codes as
    `gridlab check`'s; a download that fails is one error line naming it (exit 2).
    """
    grid = grid_mod.load(grid_file)

    def started(need) -> None:
        console.print(f"fetching {need.kind} {escape(need.label)} ({need.source})", highlight=False)

    result = fetch_mod.of_grid(grid, on_start=started)
    if result.fetched:
        console.print(f"fetched {len(result.fetched)}: " + ", ".join(escape(n.label) for n in result.fetched),
                      highlight=False)
    _print(result.report, grid_file, "table")
    if result.failed:
        names = "; ".join(f"{n.label} ({why})" for n, why in result.failed)
        raise GridlabError(f"could not fetch {len(result.failed)} of {len(result.failed) + len(result.fetched)}: {names}",
                           "run gridlab fetch where the Hugging Face hub is reachable (and HF_HUB_OFFLINE is not set)")
    if not result.report.ready:
        sys.exit(1)


def fetch_command(grid_file: Path | str | None) -> str:
    return f"gridlab fetch {grid_file}" if grid_file else "gridlab fetch GRID_FILE"


def _print(report: check_mod.Report, grid_file: Path, format_: str) -> None:
    if format_ == "json":
        click.echo(json.dumps(report.as_json(fetch_command(grid_file)), indent=1))
        return
    print_report(report, fetch_command(grid_file))


def print_report(report: check_mod.Report, fetch: str) -> None:
    """The table, then what to run for what is missing (also what ``launch`` shows when it refuses)."""
    console.print(check_mod.table(report))
    for line in check_mod.fix_lines(report, fetch):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if report.ready:
        console.print("[green]Ready[/]: every need is on this machine (checked offline).")
