"""``gridlab compare``: a grid's evaluation results as tables.

- PairRM win rates of arm a over arm b with bootstrap intervals, per judge job (one pair of
  cells), and per comparison across seeds (paired by prompt, see :mod:`harness.evaluation.winrate`);
- generation timing per arm (total time, tokens per second, mean latency), and its mean per
  value of each compared factor;
- perplexity (lm-eval) and ROUGE/BLEU per arm.

Everything is read from the database: verdicts from ``judgments``, answers from ``generations``,
figures from ``summaries``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from db import engine as db_engine
from db import schema
from db.errors import GridlabError
from harness import inputs, terminal

console = terminal.console
DB_HELP = "Database URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: $GRIDLAB_DB, else sqlite:///gridlab.db)."
SEED = "seed"
TIMING = (("gen_total_s", "total s"), ("gen_tokens_per_s", "tokens/s"), ("gen_mean_latency_s", "mean latency s"))


@click.command("compare")
@click.option("--grid", default=None, type=inputs.TEXT, help="The grid (default: the only grid with evaluation results).")
@click.option("--factor", default=None, type=inputs.TEXT, help="Only comparisons of this factor (a key of the grid's compare:).")
@click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999), help="Interval level.")
@click.option("--db", "db_url", envvar="GRIDLAB_DB", default=None, metavar="URL", type=inputs.TEXT, help=DB_HELP)
def compare(grid: str | None, factor: str | None, confidence: float, db_url: str | None) -> None:
    """PairRM win rates with intervals, generation timing and perplexity per arm."""
    from jobs import outputs

    engine = _engine(db_url)
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
    drift = _drift(engine, [j.job_id for j in judges] + [a.job_id for a in arms]
                   + [x for j in judges for v in j.judgments for x in (v.arm_a, v.arm_b)])
    labels = drift.columns()
    if judges:
        console.print(win_rate_table(judges, confidence, labels))
    if arms:
        console.print(timing_table(arms, labels))
        for name in sorted({j.spec.get("factor") for j in judges} if judges else ()):
            console.print(timing_by_table(arms, name))
        quality = quality_table(arms)
        if quality is not None:
            console.print(quality)
    line = drift.warning()
    if line:  # the tables above pool these jobs: say where they ran different programs
        console.print(f"warning: {line}", style="yellow", markup=False, highlight=False, soft_wrap=True)


def _drift(engine, job_ids):
    from db import provenance
    from db.session import scope

    with scope(engine, write=False) as conn:
        return provenance.drift(conn, job_ids)


def win_rate_table(judges, confidence: float, labels: dict[str, dict[int, str]] | None = None) -> Table:
    """``labels``: extra columns (code, env) naming what each judge's arms ran under."""
    from harness.evaluation import winrate

    labels = labels or {}
    table = Table(title=f"PairRM win rates, arm a over arm b ({confidence:.0%} bootstrap intervals)", title_justify="left")
    for col, justify in (("comparison", "left"), ("cell", "left"), ("judged", "right"), ("a-b-tie", "right"),
                         ("win rate a", "right"), ("interval", "right"), ("judge job", "right")):
        table.add_column(col, justify=justify)
    for col in labels:
        table.add_column(f"arms' {col}", style="yellow")
    groups: dict[tuple[str, str], dict[Any, dict]] = defaultdict(dict)
    for job in judges:
        label = escape(str(job.factors.get("compare", job.spec.get("factor", ""))))
        cell = {k: v for k, v in job.factors.items() if k != "compare"}
        arm_ids = sorted({x for v in job.judgments for x in (v.arm_a, v.arm_b)})
        arms_ran = [escape(" / ".join(dict.fromkeys(of.get(i, "not recorded") for i in arm_ids))) for of in labels.values()]
        if not job.judgments:
            table.add_row(label, _cell(cell), "0", "", "", f"({job.state})", str(job.job_id), *arms_ran)
            continue
        rate = winrate.win_rate([j.winner for j in job.judgments], confidence=confidence)
        table.add_row(label, _cell(cell), str(rate.n), f"{rate.wins}-{rate.losses}-{rate.ties}", f"{rate.rate:.1%}",
                      f"[{rate.low:.1%}, {rate.high:.1%}]", str(job.job_id), *arms_ran)
        rest = {k: v for k, v in cell.items() if k != SEED}
        groups[(label, _cell(rest))][cell.get(SEED, job.job_id)] = {
            (j.prompt_set, j.question_id, j.turn): j.winner for j in job.judgments
        }
    for (label, rest), by_seed in groups.items():
        if len(by_seed) < 2:
            continue
        view = winrate.paired(by_seed, confidence=confidence)
        r = view.pooled
        table.add_row(f"[bold]{label}[/]", f"{rest or 'all'}; {len(by_seed)} seeds paired", str(r.n),
                      f"{r.wins}-{r.losses}-{r.ties}", f"[bold]{r.rate:.1%}[/]", f"[{r.low:.1%}, {r.high:.1%}]",
                      f"a ahead in {view.seeds_favouring_a}/{len(by_seed)}")
    return table


def timing_table(arms, labels: dict[str, dict[int, str]] | None = None) -> Table:
    labels = labels or {}
    table = Table(title="Generation timing per arm (greedy, same prompts and batches)", title_justify="left")
    for col, justify in (("job", "right"), ("cell", "left"), ("prompt set", "left"), ("answers", "right"),
                         ("new tokens", "right"), *((label, "right") for _, label in TIMING)):
        table.add_column(col, justify=justify)
    for col in labels:
        table.add_column(col, style="yellow")
    for arm in arms:
        table.add_row(str(arm.job_id), _cell(arm.factors), escape(arm.prompt_set), str(arm.answers), str(arm.new_tokens),
                      *(_num(arm.summaries.get(name)) for name, _ in TIMING),
                      *(escape(of.get(arm.job_id, "not recorded")) for of in labels.values()))
    return table


def timing_by_table(arms, factor: str) -> Table:
    table = Table(title=f"Generation timing by {escape(factor)} (mean over arms)", title_justify="left")
    for col in (factor, "arms", *(label for _, label in TIMING)):
        table.add_column(escape(col), justify="left" if col == factor else "right")
    by_value: dict[str, list] = defaultdict(list)
    for arm in arms:
        if factor in arm.factors:
            by_value[_value(arm.factors[factor])].append(arm)
    for value, group in by_value.items():
        means = []
        for name, _ in TIMING:
            values = [a.summaries[name] for a in group if name in a.summaries]
            means.append(_num(sum(values) / len(values)) if values else "")
        table.add_row(escape(value), str(len(group)), *means)
    return table


def quality_table(arms) -> Table | None:
    """Perplexity (lm-eval figures, named ``<task>.<metric>``) and ROUGE/BLEU per arm."""
    names = sorted({n for a in arms for n in a.summaries if "." in n})
    if not names:
        return None
    table = Table(title="Perplexity and reference metrics per arm", title_justify="left")
    table.add_column("job", justify="right")
    table.add_column("cell")
    for n in names:
        table.add_column(n, justify="right")
    seen: set[int] = set()
    for arm in arms:
        if arm.job_id in seen:
            continue
        seen.add(arm.job_id)
        table.add_row(str(arm.job_id), _cell(arm.factors), *(_num(arm.summaries.get(n)) for n in names))
    return table


def _engine(db_url: str | None):
    url = db_engine.resolve_url(db_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database).exists():
        raise GridlabError(f"no database at {url.database}", "point --db at the database your grid ran in")
    engine = db_engine.create(url)
    schema.ensure(engine, migrate_empty=False)
    return engine


def _only_grid(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    if not names:
        raise GridlabError("no grid in this database has evaluation results yet",
                           "run a grid whose experiment stores answers (see grids/eval_demo.yaml)")
    raise GridlabError(f"{len(names)} grids have evaluation results", f"pick one with --grid ({', '.join(names)})")


def _cell(factors: dict[str, Any]) -> str:
    """A cell's factors as markup-safe table text."""
    return escape(" ".join(f"{k}={_value(v)}" for k, v in factors.items()))


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}"
