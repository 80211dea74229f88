"""Evaluation results as terminal tables (``gridlab compare``): PairRM win rates with
bootstrap intervals, per judge job (one pair of cells) and per comparison across seeds
(paired by prompt, :mod:`harness.evaluation.winrate`); generation timing per arm and its
mean per value of a compared factor; perplexity (lm-eval) and ROUGE/BLEU per arm."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from rich.markup import escape
from rich.table import Table

from harness.evaluation import winrate

SEED = "seed"
TIMING = (("gen_total_s", "total s"), ("gen_tokens_per_s", "tokens/s"), ("gen_mean_latency_s", "mean latency s"))


def win_rate_table(judges, confidence: float, labels: dict[str, dict[int, str]] | None = None) -> Table:
    """``labels``: extra columns (code, env) naming what each judge's arms ran under."""
    labels = labels or {}
    table = Table(title=f"PairRM win rates, arm a over arm b ({confidence:.0%} bootstrap intervals over questions)",
                  title_justify="left")
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
        rate = winrate.win_rate([j.winner for j in job.judgments], questions=[question(j) for j in job.judgments],
                                confidence=confidence)
        table.add_row(label, _cell(cell), str(rate.n), f"{rate.wins}-{rate.losses}-{rate.ties}", f"{rate.rate:.1%}",
                      f"[{rate.low:.1%}, {rate.high:.1%}]", str(job.job_id), *arms_ran)
        rest = {k: v for k, v in cell.items() if k != SEED}
        groups[(label, _cell(rest))][cell.get(SEED, job.job_id)] = {
            (j.prompt_set, j.question_id, j.turn): j.winner for j in job.judgments
        }
    for (label, rest), by_seed in groups.items():
        if len(by_seed) < 2:
            continue
        view = winrate.paired(by_seed, confidence=confidence, cluster=lambda key: key[:2])
        r = view.pooled
        table.add_row(f"[bold]{label}[/]", f"{rest or 'all'}; {len(by_seed)} seeds paired", str(r.n),
                      f"{r.wins}-{r.losses}-{r.ties}", f"[bold]{r.rate:.1%}[/]", f"[{r.low:.1%}, {r.high:.1%}]",
                      f"a ahead in {view.seeds_favouring_a}/{len(by_seed)}")
    return table


def question(verdict) -> tuple[str, str]:
    """The unit a win rate's interval resamples: a verdict's question (its turns go together)."""
    return (verdict.prompt_set, verdict.question_id)


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


def _cell(factors: dict[str, Any]) -> str:
    """A cell's factors as markup-safe table text."""
    return escape(" ".join(f"{k}={_value(v)}" for k, v in factors.items()))


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}"
