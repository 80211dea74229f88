"""``evaluate_after_training``: what a training experiment calls once its model is final.

It answers the job's prompt set (both turns, timed) and stores the answers in ``generations``,
so a judge job comparing this arm with another finds them; then it runs lm-eval tasks (the
held-out perplexity by default) and ROUGE/BLEU against the validation split's responses; every
figure goes to the job's summaries. An experiment opts in by merging :data:`PARAMS` into its own
(so grids can set ``eval_*`` and a grid's ``compare:`` knows its arms store answers)::

    from harness.evaluation import hook
    PARAMS = {..., **hook.PARAMS}

    def run(ctx):
        ...train, save the final model...
        hook.evaluate_after_training(ctx, model, tokenizer, validation=validation_conversations)

Call it after the final checkpoint is saved: between its phases it honours ``ctx.should_stop()``
by raising ``jobs.errors.Interrupted``, and a resumed attempt simply evaluates again (stored
answers are kept, not duplicated; greedy decoding gives the same text).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobs.params import Param


def _check_prompts(value: str) -> str | None:
    from harness.evaluation import prompts

    if value and value not in prompts.SHIPPED and not prompts.resolve(value).is_file():
        return f"no prompt file at {value}; give an MT-Bench-format .jsonl file, 'demo', or '' for none"
    return None


PARAMS = {
    "eval_prompts": Param(str, "demo", "MT-Bench-format prompt file answered after training ('demo' ships with "
                          "gridlab; '' answers none)", check=_check_prompts),
    "eval_prompt_limit": Param(int, 0, "answer only the first N questions (0: all)", minimum=0),
    "eval_max_new_tokens": Param(int, 64, "tokens generated per answer at most (greedy decoding)", minimum=1),
    "eval_min_new_tokens": Param(int, 0, "tokens generated per answer at least: end-of-sequence is held back until "
                                 "then (0: none). Equal to eval_max_new_tokens, every answer is exactly that long: the "
                                 "same work for every arm (timing compares) and no empty answers from a model that "
                                 "learned to stop at once", minimum=0, neutral=True),
    "eval_batch_size": Param(int, 8, "prompts per generate call", minimum=1),
    "eval_lm_tasks": Param(str, "gridlab_heldout_perplexity", "comma-separated lm-eval tasks ('' for none)"),
    "eval_references": Param(int, 32, "validation examples scored with ROUGE/BLEU (0: none)", minimum=0),
}


@dataclass(frozen=True)
class Settings:
    prompts: str = "demo"
    prompt_limit: int = 0
    max_new_tokens: int = 64
    min_new_tokens: int = 0
    batch_size: int = 8
    lm_tasks: tuple[str, ...] = ("gridlab_heldout_perplexity",)
    references: int = 32

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "Settings":
        get = lambda key: spec.get(key, PARAMS[key].default)  # noqa: E731
        tasks = tuple(t.strip() for t in str(get("eval_lm_tasks")).split(",") if t.strip())
        return cls(prompts=get("eval_prompts"), prompt_limit=get("eval_prompt_limit"),
                   max_new_tokens=get("eval_max_new_tokens"), min_new_tokens=get("eval_min_new_tokens"),
                   batch_size=get("eval_batch_size"),
                   lm_tasks=tasks, references=get("eval_references"))


def check_spec(spec: dict[str, Any]) -> str | None:
    """A problem with a cell's evaluation settings together (experiments that merge
    :data:`PARAMS` call it from their own ``check_spec``)."""
    settings = Settings.from_spec(spec)
    if settings.min_new_tokens > settings.max_new_tokens:
        return (f"eval_min_new_tokens ({settings.min_new_tokens}) is more than eval_max_new_tokens "
                f"({settings.max_new_tokens}); make it at most that (equal: every answer exactly that long)")
    return None


def evaluate_after_training(ctx, model, tokenizer, *, validation: Sequence | None = None) -> dict[str, float]:
    """Generate (timed) and store answers, run lm-eval tasks and ROUGE/BLEU, and store the
    figures as the job's summaries. ``validation``: the held-out conversations
    (``harness.data.conversation.Conversation``); without it the held-out perplexity and
    ROUGE/BLEU are skipped. Returns the figures."""
    from harness.evaluation import generation, lm_eval_tasks, prompts, references

    settings = Settings.from_spec(ctx.spec)
    decoding = generation.Decoding(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)
    figures: dict[str, float] = {}
    if settings.prompts:
        prompt_set = prompts.load(settings.prompts, limit=settings.prompt_limit or None)
        # Only the prompt set's answers are held to eval_min_new_tokens: ROUGE/BLEU score the
        # completions below against references, where stopping when done is part of the answer.
        answering = dataclasses.replace(decoding, min_new_tokens=settings.min_new_tokens)
        result = generation.generate(model, tokenizer, prompt_set, answering)
        ctx.store_generations(result.answers)
        figures.update(result.timing.figures())
        _checkpoint(ctx, figures)
    tasks = [t for t in settings.lm_tasks if validation or t != lm_eval_tasks.HELDOUT]
    if tasks:
        figures.update(lm_eval_tasks.run(model, tokenizer, tasks, heldout=validation, batch_size=settings.batch_size))
        _checkpoint(ctx, figures)
    if validation and settings.references:
        figures.update(references.evaluate(model, tokenizer, list(validation)[: settings.references], decoding))
    ctx.summary(figures)
    return figures


def _checkpoint(ctx, figures: dict[str, float]) -> None:
    """Keep what is done, and stop here if the worker is stopping."""
    ctx.summary(figures)
    if ctx.should_stop():
        from jobs.errors import Interrupted

        raise Interrupted(ctx.stop_reason, ctx.stop_outcome)
