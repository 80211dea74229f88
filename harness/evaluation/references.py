"""ROUGE and BLEU of a model's answers against reference outputs (the validation split's own
responses), as in the LoRA-vs-IA3 study.

ROUGE-1/2/L are mean F1 over examples (Google's ``rouge-score``, Porter stemming); BLEU is
corpus BLEU (``sacrebleu``, its default 13a tokenisation). All are on a 0-100 scale.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.data.conversation import Conversation
from harness.evaluation import generation

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``{"rouge1", "rouge2", "rougeL", "bleu"}`` of ``predictions`` against ``references``."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return {}
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        for kind, score in scorer.score(reference, prediction).items():
            totals[kind] += score.fmeasure
    figures = {kind: 100.0 * total / len(predictions) for kind, total in totals.items()}
    figures["bleu"] = float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)
    return figures


def evaluate(model, tokenizer, conversations: Sequence[Conversation], decoding: generation.Decoding) -> dict[str, float]:
    """Answer each conversation's final user turn and score against its final assistant turn.
    Figures are named ``ref.<metric>``."""
    usable = [c for c in conversations if c.turns and c.turns[-1].role == "assistant"]
    if not usable:
        return {}
    predictions = generation.complete(model, tokenizer, usable, decoding)
    references = [c.turns[-1].content for c in usable]
    return {f"ref.{k}": v for k, v in scores(predictions, references).items()}
