"""The prompt template: how a conversation becomes text.

Every turn is rendered as a header line and its content, followed by a blank line::

    ### System:
    You are terse.

    ### User:
    Add the two numbers.

    37 + 58

    ### Assistant:
    95<eos>

The tokenizer's end-of-sequence token closes each assistant turn (added as a token id by
`harness.data.tokenization`, not as text), so a model learns to stop. A prompt for generation ends
with ``### Assistant:\\n``. The same template serves every format and every model family.
"""

from __future__ import annotations

from harness.data.conversation import Conversation

_HEADERS = {"system": "### System:\n", "user": "### User:\n", "assistant": "### Assistant:\n"}
SEPARATOR = "\n\n"


def header(role: str) -> str:
    return _HEADERS[role]


def render(conversation: Conversation, eos: str = "") -> str:
    """The whole conversation as one string, with `eos` closing each assistant turn."""
    return SEPARATOR.join(
        header(turn.role) + turn.content + (eos if turn.role == "assistant" else "") for turn in conversation.turns
    )


def prompt(conversation: Conversation, eos: str = "") -> str:
    """Everything before the final assistant turn's content: the input a model answers."""
    *context, last = conversation.turns
    if last.role != "assistant":
        raise ValueError(f"a prompt is cut before a final assistant turn; this conversation ends with {last.role}")
    before = render(Conversation(tuple(context)), eos) + SEPARATOR if context else ""
    return before + header("assistant")
