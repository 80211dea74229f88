"""``gridlab enqueue`` (a grid file's cells into the queue) and ``gridlab params`` (what a
grid file may set)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from db.errors import NoDatabase
from harness import enqueue as enqueue_mod
from harness import experiments, report, terminal
from harness import grid as grid_mod
from harness.cli import options

console = terminal.console


@click.command()
@click.argument("grid_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and count new and existing cells; write nothing.")
@click.option("--yes", is_flag=True, help=f"Allow grids of more than {1_000_000:,} cells.")
@options.db_option
def enqueue(grid_file: Path, dry_run: bool, yes: bool, db_url: str | None) -> None:
    """Expand GRID_FILE into jobs and add the new ones to the queue (idempotent)."""
    plan = enqueue_mod.plan(grid_mod.load(grid_file, allow_large=yes))  # every problem surfaces before the database is touched
    name = escape(plan.grid.name)
    if dry_run:
        try:
            queue = options.open_queue(db_url)
        except NoDatabase:
            queue = None  # nothing queued yet, and a dry run creates nothing
        result = plan.count(queue)
        console.print(f"[bold]{name}[/]: {result.total} cells, {result.new} new, {result.existing} already queued (dry run: nothing written)")
        return
    queue = options.open_queue(db_url, create=True)
    with terminal.progress(transient=True) as progress:
        task = progress.add_task("enqueueing", total=len(plan.jobs))
        result = plan.write(queue, progress=lambda n: progress.advance(task, n))
    console.print(f"[bold]{name}[/]: {result.total} cells, [green]{result.new} new[/], {result.existing} already queued")


@click.command()
@click.argument("experiment", required=False)
def params(experiment: str | None) -> None:
    """What a grid file may set: the experiments, or one experiment's parameters."""
    if experiment is None:
        for name in sorted(experiments.REGISTRY):
            doc = (experiments.load(name).__doc__ or "").strip().splitlines()
            console.print(f"[bold]{name}[/]  {doc[0] if doc else ''}", highlight=False)
        console.print("See one experiment's parameters with `gridlab params NAME`.")
        return
    console.print(report.params_table(experiment, experiments.load(experiment).PARAMS))
