"""Where a grid stands and what it found: ``gridlab status`` (jobs by state, per factor,
GPU hours, running jobs, dispatched workers), ``gridlab results`` (final figures per
cell, and each factor's effect) and ``gridlab compare`` (evaluation results: win rates,
generation timing, perplexity).

Where the jobs a table pools ran under different code or environments, a warning says
which, and a column gives each job's (:func:`db.provenance.drift`).
"""

from __future__ import annotations

import click
from rich.markup import escape

from db import costs, database, provenance
from db.errors import GridlabError
from db.session import scope
from harness import inputs, report, terminal
from harness.cli import options
from harness.evaluation import tables
from jobs import outputs, reports
from slurm import supervise

console = terminal.console


@click.command()
@click.option("--grid", default=None, type=inputs.TEXT, help="Only this grid.")
@click.option("--by", multiple=True, metavar="FACTOR", type=inputs.TEXT, help="Only these factors in the per-factor tables (repeatable).")
@options.db_option
def status(grid: str | None, by: tuple[str, ...], db_url: str | None) -> None:
    """Counts of jobs by state, per grid and per grid factor."""
    queue = options.open_queue(db_url)
    grids = [grid] if grid else reports.grids(queue.engine)
    if not grids:
        console.print("No grids yet. Run `gridlab enqueue GRID.yaml`.")
        return
    console.print(report.counts_table({g: reports.counts(queue.engine, g) for g in grids}))
    for table in report.factor_tables(reports.factor_states(queue.engine, grid), only=list(by) or None):
        console.print(table)
    hours = costs.gpu_hours(reports.device_seconds(queue.engine, grid))
    if costs.any_spent(hours):  # machines with GPUs (or cells that asked for them) only, as on the Overview page
        console.print(report.gpu_hours_table(hours))
        for table in report.gpu_hours_by_factor(hours, only=list(by) or None):
            console.print(table)
    running = reports.running(queue.engine, grid)
    if running:
        console.print(report.running_table(running))
    workers = supervise.worker_counts(queue)
    if workers:
        console.print(report.workers_table(workers))
    stale = reports.stale(queue.engine)
    if stale:
        console.print(f"[red]{stale} running job(s) have expired leases[/] (their workers died or hung); any worker will reclaim them.")


@click.command()
@click.option("--grid", default=None, type=inputs.TEXT, help="Only this grid.")
@click.option("--metric", "metrics", multiple=True, type=inputs.TEXT, help="Only these summary figures (repeatable).")
@click.option("--effects", is_flag=True, help="Then each factor's effect on each figure shown (mean and 95% interval "
              "per level over the rest of the grid, as the dashboard's Factor effects page shows it).")
@click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="table", show_default=True,
              help="table: for a terminal (factors every job shares in a heading). csv, tsv, json: for programs "
                   "(every column, constant factors included, and every figure unless --metric names some; "
                   "nothing cut, no heading; json is a list of objects).")
@options.db_option
def results(grid: str | None, metrics: tuple[str, ...], effects: bool, fmt: str, db_url: str | None) -> None:
    """Final figures (summaries) of finished jobs, one row per grid cell; judge jobs are
    left out (their verdicts: `gridlab compare`).

    Where the jobs ran under different code or environments, a warning says which, and
    a column gives each job's."""
    queue = options.open_queue(db_url)
    machine = fmt != "table"
    rows = reports.summaries(queue.engine, grid)
    view = report.results(rows, list(metrics) or None, every_figure=machine)
    if not view.jobs and not machine:
        console.print("No results yet: no job has finished." + (
            " (Only judge jobs have: `gridlab compare` shows them.)" if view.judges else ""))
        return
    drift = pooled_drift(queue.engine, set(view.jobs))
    if machine:
        click.echo(report.results_text(view, fmt, provenance=drift.columns()), nl=False)
        warn_drift(drift, err=True)
        return
    console.print(report.results_table(view, provenance=drift.columns(), width=console.width))
    warn_drift(drift)
    if effects:
        for name in view.metrics:
            console.print(report.effects_table([r for r in rows if r.id in view.figures], name))


@click.command("compare")
@click.option("--grid", default=None, type=inputs.TEXT, help="The grid (default: the only grid with evaluation results).")
@click.option("--factor", default=None, type=inputs.TEXT, help="Only comparisons of this factor (a key of the grid's compare:).")
@click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999), help="Interval level.")
@options.db_option
def compare(grid: str | None, factor: str | None, confidence: float, db_url: str | None) -> None:
    """PairRM win rates with intervals, generation timing and perplexity per arm."""
    engine = database.open_engine(db_url, missing_fix="point --db at the database your grid ran in")
    grid = grid or _only_grid(outputs.grid_names_with_outputs(engine))
    judges = outputs.grid_judgments(engine, grid)
    arms = outputs.grid_outputs(engine, grid)
    if factor is not None:
        compared = sorted({j.spec.get("factor") for j in judges})
        if factor not in compared:
            raise GridlabError(f"grid {grid!r} has no comparison of {factor!r}",
                               f"compared factors: {', '.join(compared) or 'none (add compare: to the grid file)'}")
        judges = [j for j in judges if j.spec.get("factor") == factor]
    if not judges and not arms:
        console.print(f"No evaluation results in grid {escape(grid)!r} yet: its jobs store answers when they finish "
                      "(experiments that call harness.evaluation.hook).")
        return
    drift = pooled_drift(engine, [j.job_id for j in judges] + [a.job_id for a in arms]
                         + [x for j in judges for v in j.judgments for x in (v.arm_a, v.arm_b)])
    labels = drift.columns()
    if judges:
        console.print(tables.win_rate_table(judges, confidence, labels))
    if arms:
        console.print(tables.timing_table(arms, labels))
        for name in sorted({j.spec.get("factor") for j in judges} if judges else ()):
            console.print(tables.timing_by_table(arms, name))
        quality = tables.quality_table(arms)
        if quality is not None:
            console.print(quality)
    warn_drift(drift)  # the tables above pool these jobs: say where they ran different programs


def _only_grid(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    if not names:
        raise GridlabError("no grid in this database has evaluation results yet",
                           "run a grid whose experiment stores answers (see grids/eval_demo.yaml)")
    raise GridlabError(f"{len(names)} grids have evaluation results", f"pick one with --grid ({', '.join(names)})")


def pooled_drift(engine, job_ids) -> provenance.Drift:
    """What the jobs' attempts ran under."""
    with scope(engine, write=False) as conn:
        return provenance.drift(conn, job_ids)


def warn_drift(drift: provenance.Drift, *, err: bool = False) -> None:
    """The drift warning, on stdout (``err``: stderr, so that machine output stays clean)."""
    line = drift.warning()
    if line:
        (terminal.err_console if err else console).print(f"warning: {line}", style="yellow", markup=False,
                                                         highlight=False, soft_wrap=True)
