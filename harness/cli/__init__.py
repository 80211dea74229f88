"""The ``gridlab`` command line: the command group, its entry point, and one module per
family of commands.

- :mod:`~harness.cli.options`: the one ``--db`` option and the one way a command opens the
  queue (over :func:`db.database.open_engine`), the job selection of ``retry``/``cancel``;
- :mod:`~harness.cli.grids`: ``enqueue``, ``params``;
- :mod:`~harness.cli.work`: ``work`` (local workers);
- :mod:`~harness.cli.jobs`: ``show``, ``logs``, ``run``, ``retry``, ``cancel``;
- :mod:`~harness.cli.results`: ``status``, ``results``, ``compare``;
- :mod:`~harness.cli.report`: ``report`` (Markdown and PNG figures), ``export`` (CSV/Parquet);
- :mod:`~harness.cli.slurm`: ``launch`` (after ``check``'s test of the pending jobs), ``supervise``;
- :mod:`~harness.cli.readiness`: ``check`` (offline: is everything a grid needs here?), ``fetch``;
- :mod:`~harness.cli.dashboard`: ``dashboard``;
- :mod:`~harness.cli.schema`: ``db upgrade``, ``db current``.

A command reads its arguments, makes its call below the command line (``jobs``, ``slurm``,
``harness``) and prints. Every command takes ``--db URL`` (or ``GRIDLAB_DB``; default
``sqlite:///gridlab.db``). A mistake of the user's (a bad grid file, an unreachable
database, ...) prints one line, ``gridlab: error: <what>; <how to fix>``, and exits with code 2.
"""

from __future__ import annotations

import sys

import click

from db.errors import GridlabError
from harness import terminal
from harness.cli import dashboard, grids, jobs, readiness, report, results, schema, slurm, work


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gridlab")
def cli() -> None:
    """gridlab: run ablation grids of LM post-training experiments, locally or on Slurm.

    \b
    Typical session:
      gridlab enqueue grids/demo.yaml     # grid file -> job records
      gridlab work --workers 2            # local workers drain the queue
      gridlab status                      # where the grid stands
      gridlab results                     # final figures per cell
      gridlab report demo                 # Markdown report with figures, in reports/demo
      gridlab params sft                  # what a grid file may set for an experiment
      gridlab check grids/demo.yaml       # offline: is every model, dataset, ranker here?
      gridlab fetch GRID.yaml             # where the hub is reachable: download them
    """


for command in (grids.enqueue, work.work, results.status, results.results, jobs.retry, jobs.cancel, jobs.show,
                grids.params, schema.db, slurm.launch, slurm.supervise, dashboard.dashboard, results.compare,
                jobs.logs, jobs.run, readiness.check, readiness.fetch, report.report, report.export):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes become one line on stderr and exit code 2."""
    err_console = terminal.err_console
    try:
        cli.main(args=argv, prog_name="gridlab", standalone_mode=False)
    except GridlabError as exc:
        err_console.print(f"gridlab: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Abort:
        err_console.print("gridlab: aborted", highlight=False)
        sys.exit(130)
    except click.UsageError as exc:
        # One line, like every other mistake: what, and where to read how.
        where = exc.ctx.command_path if exc.ctx else "gridlab"
        err_console.print(f"gridlab: error: {exc.format_message()}; see `{where} --help`",
                          markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
