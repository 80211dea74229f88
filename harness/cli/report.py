"""A grid's results as files: ``gridlab report`` (a Markdown report with PNG figures, its tables
printed too) and ``gridlab export`` (tidy tables as CSV or Parquet for pandas). Both read the
database alone."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from db import database
from db import engine as db_engine
from harness import inputs, terminal
from harness.cli import options
from harness.reporting import document, export as exporting
from harness.reporting.tables import TextTable

console = terminal.console
MISSING_FIX = "point --db at the database your grid ran in"


@click.command()
@click.argument("grid", type=inputs.TEXT)
@click.option("--out", "out", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for report.md and figures/ (default: reports/GRID).")
@options.db_option
def report(grid: str, out: Path | None, db_url: str | None) -> None:
    """Write GRID's report: Key Results (LayerNorm vs each swap, paired over seeds), PairRM
    head-to-head, inference timing, loss and ROUGE/BLEU, curves and the entropy heatmap."""
    engine = database.open_engine(db_url, missing_fix=MISSING_FIX)
    out = out or Path("reports") / grid
    with terminal.progress(transient=True) as bar:
        task = bar.add_task(f"report {grid}", total=len(document.STEPS))
        written = document.write(engine, grid, out, source=db_engine.redact(options.url_as_given(db_url)),
                                 on_step=lambda name: bar.update(task, advance=1, description=name))
    for heading, items in written.sections[1:5]:
        for item in items:
            if isinstance(item, TextTable):
                for table in document.terminal_tables(item):
                    console.print(table)
            else:
                console.print(f"{heading}: {escape(item)}")
    console.print(f"Wrote {escape(str(written.path))} and {len(written.figures)} figure(s) in "
                  f"{escape(str(written.path.parent / 'figures'))}")


@click.command()
@click.argument("grid", type=inputs.TEXT)
@click.option("--format", "fmt", type=click.Choice(exporting.FORMATS), default="csv", show_default=True)
@click.option("--out", "out", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the tables (default: exports/GRID).")
@options.db_option
def export(grid: str, fmt: str, out: Path | None, db_url: str | None) -> None:
    """Write GRID's jobs (with their factors), summaries, curves, answers and verdicts as tidy
    tables, one file each, for pandas (join on job_id)."""
    engine = database.open_engine(db_url, missing_fix=MISSING_FIX)
    for name, (path, rows) in exporting.write(engine, grid, out or Path("exports") / grid, fmt).items():
        console.print(f"{name}: {rows:,} rows -> {escape(str(path))}")
