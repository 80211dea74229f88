"""Tokenising conversations for training, with the loss masked to the response.

Causal models (GPT-2, GPT-NeoX) get one sequence, the rendered template; `labels` equal
`input_ids` on assistant content and its end-of-sequence token and are -100 elsewhere (with
`response_only=False`, everything is learned). Seq2seq models (T5) get the prompt as
`input_ids` and the final assistant turn plus end-of-sequence as `labels`; `response_only` does
not apply to them, and earlier assistant turns sit in the prompt without end-of-sequence tokens.

Sequences are cut at `max_length` from the end; an example left with no label to learn is
dropped and counted. Padding is left to the collator (`transformers.DataCollatorForSeq2Seq`
pads `labels` with -100 and works for both kinds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.data import template
from harness.data.conversation import Conversation

if TYPE_CHECKING:
    import datasets

#: The label of a position that carries no loss (the prompt, padding): the value every
#: loss, collator and token count in gridlab ignores (PyTorch's and transformers' default).
IGNORE = -100


@dataclasses.dataclass(frozen=True)
class Tokenized:
    dataset: datasets.Dataset  # columns input_ids, attention_mask, labels
    dropped: int  # examples whose whole response fell past max_length


def tokenize(
    conversations: Sequence[Conversation],
    tokenizer,
    *,
    seq2seq: bool,
    max_length: int = 512,
    response_only: bool = True,
) -> Tokenized:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no end-of-sequence token; set tokenizer.eos_token before tokenising")
    build = _seq2seq_example if seq2seq else _causal_example
    pieces = [_pieces(conversation, response_only, seq2seq) for conversation in conversations]
    flat = [text for example in pieces for text, _, _ in example]
    encoded = iter(tokenizer(flat, add_special_tokens=False)["input_ids"]) if flat else iter(())
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    dropped = 0
    for example in pieces:
        ids_and_flags = [(next(encoded), learn, eos) for _, learn, eos in example]
        input_ids, labels = build(ids_and_flags, tokenizer.eos_token_id, max_length)
        if all(label == IGNORE for label in labels):
            dropped += 1
            continue
        rows["input_ids"].append(input_ids)
        rows["attention_mask"].append([1] * len(input_ids))
        rows["labels"].append(labels)
    import datasets

    return Tokenized(datasets.Dataset.from_dict(rows), dropped)


def _pieces(conversation: Conversation, response_only: bool, seq2seq: bool) -> list[tuple[str, bool, bool]]:
    """(text, learn it, end-of-sequence follows) for each piece of the rendered template."""
    if seq2seq:
        return [(template.prompt(conversation), False, False), (conversation.turns[-1].content, True, True)]
    out = []
    last = len(conversation.turns) - 1
    for i, turn in enumerate(conversation.turns):
        response = turn.role == "assistant"
        out.append((template.header(turn.role), not response_only, False))
        out.append((turn.content, response or not response_only, response))
        if i < last:
            out.append((template.SEPARATOR, not response_only, False))
    return out


def _causal_example(pieces, eos_id: int, max_length: int) -> tuple[list[int], list[int]]:
    input_ids: list[int] = []
    labels: list[int] = []
    for ids, learn, eos in pieces:
        ids = ids + [eos_id] if eos else ids
        input_ids += ids
        labels += ids if learn else [IGNORE] * len(ids)
    return input_ids[:max_length], labels[:max_length]


def _seq2seq_example(pieces, eos_id: int, max_length: int) -> tuple[list[int], list[int]]:
    (prompt_ids, _, _), (response_ids, _, _) = pieces
    return prompt_ids[:max_length], (response_ids + [eos_id])[:max_length]
