"""Record formats: Alpaca, ShareGPT and RE-WILD, each converted to a `Conversation`.

A converter takes one decoded JSON record and returns a `Conversation` ending with an assistant
turn, or raises `BadRecord` saying what is wrong with it; the loader counts those as skipped.

- alpaca: ``{"instruction": str, "input": str (optional), "output": str}``; a non-empty input is
  appended to the instruction after a blank line.
- sharegpt: ``{"conversations": [{"from": "human"|"gpt"|"system"|..., "value": str}, ...]}``.
- rewild: ``{"messages": [{"role": "user"|"assistant"|"system", "content": str}, ...]}``, or the
  ShareGPT form.

Chat turns after the last assistant turn are dropped (there is no response to learn from them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from harness.data.conversation import Conversation, Turn


class BadRecord(ValueError):
    """One record that cannot be used; the message says why."""


# ShareGPT dumps use many speaker names; these cover FastChat's and the common exports.
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}
_CHAT_ROLES = {"user": "user", "assistant": "assistant", "system": "system"}


def _text(record: Mapping[str, Any], key: str, *, required: bool) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BadRecord(f"field {key!r} is {type(value).__name__}, expected a string")
    return value


def alpaca(record: Any) -> Conversation:
    if not isinstance(record, Mapping):
        raise BadRecord(f"record is {type(record).__name__}, expected an object")
    instruction = _text(record, "instruction", required=True).strip()
    extra = _text(record, "input", required=False).strip()
    output = _text(record, "output", required=True).strip()
    if not instruction or not output:
        raise BadRecord("empty instruction or output")
    user = f"{instruction}\n\n{extra}" if extra else instruction
    return Conversation((Turn("user", user), Turn("assistant", output)))


def _chat(turns: Any, role_key: str, text_key: str, roles: Mapping[str, str]) -> Conversation:
    if not isinstance(turns, list):
        raise BadRecord(f"turns are {type(turns).__name__}, expected a list")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            raise BadRecord(f"turn {i} is {type(turn).__name__}, expected an object")
        speaker = turn.get(role_key)
        role = roles.get(speaker.lower()) if isinstance(speaker, str) else None
        if role is None:
            raise BadRecord(f"turn {i} has {role_key}={speaker!r}; expected one of {sorted(roles)}")
        content = turn.get(text_key)
        if not isinstance(content, str):
            raise BadRecord(f"turn {i} {text_key!r} is {type(content).__name__}, expected a string")
        out.append(Turn(role, content.strip()))
    while out and out[-1].role != "assistant":
        out.pop()
    if not out:
        raise BadRecord("no assistant turn")
    if not out[-1].content:
        raise BadRecord("last assistant turn is empty")
    return Conversation(tuple(out))


def sharegpt(record: Any) -> Conversation:
    if not isinstance(record, Mapping) or "conversations" not in record:
        raise BadRecord("record has no 'conversations' list")
    return _chat(record["conversations"], "from", "value", _SHAREGPT_ROLES)


def rewild(record: Any) -> Conversation:
    if isinstance(record, Mapping) and "messages" in record:
        return _chat(record["messages"], "role", "content", _CHAT_ROLES)
    if isinstance(record, Mapping) and "conversations" in record:
        return sharegpt(record)
    raise BadRecord("record has neither a 'messages' nor a 'conversations' list")


CONVERTERS: dict[str, Callable[[Any], Conversation]] = {"alpaca": alpaca, "sharegpt": sharegpt, "rewild": rewild}
