"""The report's tables, as data: what the Markdown file and the terminal print alike.

- :func:`key_results`: per group and arm, the baseline's (LayerNorm's) and the arm's validation
  loss, their gap and the gap in percent, each a mean and 95% t interval over seeds, and the
  paired t test of the gap (cells paired by seed; "n/a" under two pairs);
- :func:`head_to_head`: per judge job and per pair of arms over seeds, wins, losses and ties,
  the win rate (ties count half) with a bootstrap interval that resamples questions (a
  question's turns together) and the exact binomial test of the decided verdicts (ties left out);
- :func:`timing`: tokens per second per arm with an interval over questions, and each arm's
  change over the baseline with a paired interval over the questions both answered; whether the
  stored answers are equal work (the same number of new tokens for each prompt in both arms) is
  checked, and said where they are not;
- :func:`quality`: per cell (seeds pooled), losses and ROUGE-1/2/L and BLEU.

Every interval and test is :mod:`db.stats`'s, as ``gridlab compare`` and the dashboard use.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from db import stats
from harness.reporting import arms
from harness.reporting.arms import Cell, Layout

#: The figure the Key Results compare.
LOSS = "val_loss"
NA = "n/a"


@dataclass(frozen=True)
class TextTable:
    """A table as text: ``title``, column names, rows of cells, and notes printed under it."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


def num(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return NA
    if value != 0 and abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def interval(mean: float, low: float, high: float, *, digits: int = 4, suffix: str = "") -> str:
    """``mean [low, high]``, ``mean`` alone where the interval is not defined, n/a without a mean."""
    if not math.isfinite(mean):
        return NA
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{num(mean, digits)}{suffix}"
    return f"{num(mean, digits)}{suffix} [{num(low, digits)}, {num(high, digits)}]"


def p_value(p: float) -> str:
    if not math.isfinite(p):
        return NA
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


# --- Key Results -------------------------------------------------------------------------------


def _by_group(cells: Sequence[Cell], lay: Layout) -> dict[str, dict[str, dict[Hashable, Cell]]]:
    """group -> arm -> seed -> cell (succeeded cells only)."""
    out: dict[str, dict[str, dict[Hashable, Cell]]] = defaultdict(lambda: defaultdict(dict))
    for c in cells:
        if c.state == "succeeded":
            out[lay.group(c)][lay.arm(c)][stats.level_key(c.seed)] = c
    return out


def key_results(cells: Sequence[Cell], lay: Layout, metric: str = LOSS) -> TextTable | str:
    """Baseline vs each other arm on ``metric``, per group, paired by seed."""
    if not lay.has_norm:
        return "No norm factor in this grid: no Key Results table (it compares LayerNorm with each swap)."
    base = lay.baseline_label
    if base is None:
        return "No LayerNorm cell (norm: layernorm or keep) in this grid: nothing to compare the swaps with."
    rows = []
    for group, by_arm in sorted(_by_group(cells, lay).items()):
        baseline = {s: c.summaries.get(metric) for s, c in by_arm.get(base, {}).items()}
        if not baseline:
            continue
        for arm, runs in sorted(by_arm.items()):
            if arm == base:
                continue
            values = {s: c.summaries.get(metric) for s, c in runs.items()}
            test = stats.paired_t(baseline, values)
            shared = [s for s in values if s in baseline and _ok(values[s]) and _ok(baseline[s])]
            percent = stats.mean_interval([100.0 * (values[s] / baseline[s] - 1.0) for s in shared if baseline[s]])
            b = stats.mean_interval([baseline[s] for s in shared])
            a = stats.mean_interval([values[s] for s in shared])
            rows.append((group, arm, str(test.n), interval(b.mean, b.low, b.high), interval(a.mean, a.low, a.high),
                         interval(test.mean, test.low, test.high), interval(percent.mean, percent.low, percent.high,
                                                                            digits=3, suffix=" %"),
                         p_value(test.p)))
    if not rows:
        return f"No group has both a {base} cell and a swapped one that succeeded with {metric}."
    return TextTable(
        title=f"Key results: {metric}, {base} vs each arm (mean [95% t interval] over seeds)",
        columns=("group", "arm", "pairs", base, "arm's", "gap", "gap %", "paired t p"),
        rows=tuple(rows),
        notes=(f"gap = arm - {base}, per seed (cells paired by seed: the same data order and initialisation); "
               f"gap % = 100 (arm / {base} - 1). p: two-sided paired t test over seeds of the gap (df = pairs - 1); "
               "n/a with fewer than two pairs.",))


def _ok(value) -> bool:
    return value is not None and math.isfinite(value)


# --- PairRM head-to-head -------------------------------------------------------------------------


def _question(v) -> tuple[str, str]:
    return (v.prompt_set, v.question_id)


def _verdict_row(label: str, pair: str, verdicts: Sequence, questions: Sequence) -> tuple[str, ...]:
    winners = [v.winner for v in verdicts]
    wins, losses = winners.count("a"), winners.count("b")
    ties = len(winners) - wins - losses
    rate, low, high = stats.bootstrap_win_rate_by_question(winners, questions)
    return (label, pair, str(len(winners)), f"{wins}-{losses}-{ties}", f"{wins} of {len(winners)}",
            interval(rate, low, high, digits=3), p_value(stats.binomial_p(wins, losses)))


def head_to_head(judgments: Sequence, cells: Sequence[Cell], lay: Layout) -> TextTable | str:
    """Per judge job, and pooled per pair of arms (and group) over seeds."""
    if not judgments:
        return "No verdicts on this grid's answers (no judge job has stored any)."
    by_id = {c.id: c for c in cells}

    def name(job_id: int) -> tuple[str, str]:
        c = by_id.get(job_id)
        if c is None:
            return ("?", f"job {job_id}")
        return (lay.group(c), lay.arm(c) if lay.has_norm else arms.text(c.factors))

    per_judge: dict[int, list] = defaultdict(list)
    for v in judgments:
        per_judge[v.job_id].append(v)
    rows, pooled = [], defaultdict(list)
    for judge_job, verdicts in sorted(per_judge.items()):
        first = verdicts[0]
        (group, a), (_, b) = name(first.arm_a), name(first.arm_b)
        seed = by_id[first.arm_a].seed if first.arm_a in by_id else None
        label = f"{a} vs {b}" + (f", seed={arms.text(seed)}" if seed is not None else "") + f" (judge job {judge_job})"
        rows.append(_verdict_row(group, label, verdicts, [_question(v) for v in verdicts]))
        pooled[(group, a, b)].append(verdicts)
    for (group, a, b), judged in sorted(pooled.items()):
        if len(judged) < 2:
            continue
        every = [v for vs in judged for v in vs]
        rows.append(_verdict_row(group, f"{a} vs {b}, {len(judged)} judge jobs pooled", every,
                                 [_question(v) for v in every]))
    overall: dict[tuple[str, str], list] = defaultdict(list)
    for (group, a, b), judged in pooled.items():
        overall[(a, b)].append(judged)
    for (a, b), groups in sorted(overall.items()):
        if len(groups) < 2:
            continue
        every = [v for judged in groups for vs in judged for v in vs]
        rows.append(_verdict_row(f"all {len(groups)} groups", f"{a} vs {b}, {sum(len(j) for j in groups)} judge jobs pooled",
                                 every, [_question(v) for v in every]))
    return TextTable(
        title="PairRM head-to-head: arm a vs arm b",
        columns=("group", "a vs b", "judged", "a-b-tie", "a wins", "win rate a [95%]", "binomial p"),
        rows=tuple(sorted(rows, key=lambda r: (r[0].startswith("all "), r[0]))),
        notes=("win rate: a's share, a tie counting half, with a percentile bootstrap interval "
               f"({stats.RESAMPLES:,} resamples) that resamples questions, every turn of a question (under every "
               "seed pooled) drawn together: turn 2 is asked after turn 1's answer.",
               "binomial p: exact two-sided binomial test of a's wins among the decided verdicts (ties left out) "
               "against one half; it treats every decided verdict as independent."))


# --- timing on equal work ------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmTiming:
    """One job's answers as timing data: per answer, new tokens, seconds and (prompt set,
    question, turn)."""

    cell: Cell
    tokens: tuple[float, ...]
    seconds: tuple[float, ...]
    keys: tuple[tuple[str, str, int], ...]
    limits: tuple[float | None, ...] = ()  # each answer's max_new_tokens, where recorded

    @property
    def questions(self) -> list[tuple[str, str]]:
        return [k[:2] for k in self.keys]


def arm_timings(generations: Sequence, cells: Sequence[Cell]) -> list[ArmTiming]:
    """Each cell's stored answers. An answer's seconds are its batch's wall time over the batch
    size (the decoding record's ``batch_size``): answers of one batch share its time."""
    by_job: dict[int, list] = defaultdict(list)
    for g in generations:
        by_job[g.job_id].append(g)
    by_id = {c.id: c for c in cells}
    out = []
    for job_id, answers in sorted(by_job.items()):
        if job_id not in by_id:
            continue
        out.append(ArmTiming(by_id[job_id], tuple(float(g.new_tokens) for g in answers),
                             tuple(g.latency_s / max(1, int((g.decoding or {}).get("batch_size", 1) or 1))
                                   for g in answers),
                             tuple((g.prompt_set, g.question_id, g.turn) for g in answers),
                             tuple((g.decoding or {}).get("max_new_tokens") for g in answers)))
    return out


def _stopped_early(t: ArmTiming) -> list[float]:
    """New tokens of the answers that ended before their decoding's max_new_tokens."""
    return [n for n, limit in zip(t.tokens, t.limits) if limit is not None and n < limit]


def timing(timings: Sequence[ArmTiming], lay: Layout) -> TextTable | str:
    """Tokens/s per cell, and each arm's change over the baseline of its group and seed."""
    if not timings:
        return "No stored answers in this grid: no timing."
    rows = []
    for t in timings:
        rate, low, high = stats.cluster_bootstrap(t.tokens, t.questions, weights=t.seconds)
        seed = "" if t.cell.seed is None else f"seed={arms.text(t.cell.seed)}"
        arm = " ".join(filter(None, (lay.arm(t.cell) if lay.has_norm else "", seed)))
        rows.append((lay.group(t.cell), arm, str(len(t.tokens)), f"{sum(t.tokens):,.0f}", interval(rate, low, high), ""))
    notes = ["tokens/s: new tokens over generation seconds (each answer's batch time over the batch size), "
             "its 95% bootstrap interval resampling questions (both turns together)."]
    base = lay.baseline_label
    unequal = []
    if base is not None:
        by = {(lay.group(t.cell), stats.level_key(t.cell.seed), lay.arm(t.cell)): t for t in timings}
        pooled: dict[tuple[str, str], list[tuple[ArmTiming, ArmTiming]]] = defaultdict(list)
        for (group, seed, arm), t in sorted(by.items(), key=lambda kv: str(kv[0])):
            b = by.get((group, seed, base))
            if arm == base or b is None:
                continue
            pooled[(group, arm)].append((b, t))
            tokens_a = dict(zip(b.keys, b.tokens))
            tokens_b = dict(zip(t.keys, t.tokens))
            shared = [k for k in tokens_a if k in tokens_b]
            if any(tokens_a[k] != tokens_b[k] for k in shared):
                unequal.append((group, arm, seed, sum(tokens_a[k] for k in shared), sum(tokens_b[k] for k in shared)))
        for (group, arm), pairs in sorted(pooled.items()):
            change, low, high = stats.cluster_ratio_change(
                ([x for b, _ in pairs for x in b.tokens], [x for b, _ in pairs for x in b.seconds],
                 [(stats.level_key(b.cell.seed), *q) for b, _ in pairs for q in b.questions]),
                ([x for _, t in pairs for x in t.tokens], [x for _, t in pairs for x in t.seconds],
                 [(stats.level_key(t.cell.seed), *q) for _, t in pairs for q in t.questions]))
            rows.append((group, f"{arm} over {base}, {len(pairs)} seed(s)", "", "", "",
                         interval(100 * change, 100 * low, 100 * high, digits=3, suffix=" %")))
        if pooled:
            notes.append(f"change: tokens/s of the arm over {base}'s on the questions both answered, "
                         "minus 1; the interval resamples questions, both arms' answers to a question drawn together.")
    short = [(t, g) for t in timings for g in _stopped_early(t)]
    if short:
        total = sum(len(t.tokens) for t in timings)
        notes.append(f"{len(short)} of {total} answers stopped at end-of-sequence before max_new_tokens "
                     f"(mean {sum(n for _, n in short) / len(short):.1f} new tokens): the timing is of short answers, "
                     "where fixed costs weigh most.")
    if unequal:
        worst = unequal[0]
        notes.append(f"NOT equal work: in {len(unequal)} pair(s) of arms the answers stopped at end-of-sequence after "
                     f"different numbers of new tokens (e.g. {worst[0]}, {worst[1]}: {worst[4]:,.0f} tokens against "
                     f"{base}'s {worst[3]:,.0f}), so the change compares different work. Generation here stops at "
                     "end-of-sequence; a fixed number of new tokens per answer is needed for an equal-work timing.")
    elif base is not None and any(f" over {base}, " in r[1] for r in rows):
        notes.append("Equal work: every prompt got the same number of new tokens in both arms"
                     + (" (but see above: answers that stop early time little work)." if short else "."))
    rows.sort(key=lambda r: r[0])  # stable: a group's cells, then its changes
    return TextTable(title="Inference timing per arm", columns=("cell", "arm", "answers", "new tokens",
                                                               "tokens/s [95%]", "change [95%]"),
                     rows=tuple(rows), notes=tuple(notes))


# --- losses and reference metrics ------------------------------------------------------------------

QUALITY = (("val_loss", "val loss"), ("train_loss", "train loss"), ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"),
           ("rougeL", "ROUGE-L"), ("bleu", "BLEU"))


def _figure(summaries: dict[str, float | None], name: str) -> float | None:
    """A summary by its name, or by its last part (``ref.rouge1``)."""
    if name in summaries:
        return summaries[name]
    for key, value in summaries.items():
        if key.replace("/", ".").rsplit(".", 1)[-1] == name:
            return value
    return None


def quality(cells: Sequence[Cell], lay: Layout) -> TextTable | str:
    """Per group and arm (seeds pooled): loss and ROUGE/BLEU, each a mean [95% t interval]."""
    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for c in cells:
        if c.state == "succeeded":
            groups[(lay.group(c), lay.arm(c) if lay.has_norm else "")].append(c)
    shown = [(name, label) for name, label in QUALITY
             if any(_figure(c.summaries, name) is not None for cs in groups.values() for c in cs)]
    if not groups or not shown:
        return "No succeeded cell has a loss or reference metric."
    rows = []
    for (group, arm), found in sorted(groups.items()):
        cols = []
        for name, _ in shown:
            i = stats.mean_interval([_figure(c.summaries, name) for c in found], stats.quantity_range(name))
            cols.append(interval(i.mean, i.low, i.high, digits=4))
        rows.append((group, arm, str(len(found)), *cols))
    return TextTable(title="Loss and reference metrics per PEFT method, model and arm (mean [95% t] over seeds)",
                     columns=("cell", "arm", "seeds", *(label for _, label in shown)), rows=tuple(rows),
                     notes=("ROUGE (mean F1) and BLEU (corpus) on a 0-100 scale, against the held-out references."
                            if any(n in ("rouge1", "rouge2", "rougeL", "bleu") for n, _ in shown) else
                            "No ROUGE or BLEU figure in this database (its cells stored no reference metrics: "
                            "eval_references: 0, or an experiment without them).",))
