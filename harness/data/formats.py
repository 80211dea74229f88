"""Record formats: Alpaca, ShareGPT and RE-WILD, each converted to a `Conversation`.

A converter takes one decoded JSON record and returns a `Conversation` ending with an assistant
turn, or raises `BadRecord` saying what is wrong with it; the loader counts those as skipped.

- alpaca: ``{"instruction": str, "input": str (optional), "output": str}``; a non-empty input is
  appended to the instruction after a blank line.
- sharegpt: ``{"conversations": [{"from": "human"|"gpt"|"system"|..., "value": str}, ...]}``.
- rewild: the RE-WILD SFT mix (Feuer and Hegde 2025, the WildChat-50M project) and its parts: the
  WildChat form ``{"conversation": [{"role": "user"|"assistant", "content": str, ...}, ...], ...}``
  (``nyu-dice-lab/wildchat50m-rewild-sft-385700`` and the ``allenai_WildChat-1M-Full-*`` response
  sets; the turns' other fields, ``language``, ``toxic``, ``redacted``, ..., are ignored),
  the chat form ``{"messages": [{"role": ..., "content": ...}, ...]}`` (its Tulu 3 part), or the
  ShareGPT form.

A turn's content may be a string or a list of parts, ``[{"type": "text", "text": str}, ...]`` (or
plain strings), as the OpenAI and Hugging Face chat formats write it; the text parts are joined with
a blank line, and a turn with a part that is not text (an image) is a bad record. Keys that are
``null`` (a Parquet or hub dataset fills a key one record lacks with null) are as absent.

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
        out.append(Turn(role, _content(turn.get(text_key), i, text_key).strip()))
    while out and out[-1].role != "assistant":
        out.pop()
    if not out:
        raise BadRecord("no assistant turn")
    if not out[-1].content:
        raise BadRecord("last assistant turn is empty")
    return Conversation(tuple(out))


def _content(content: Any, i: int, text_key: str) -> str:
    """A turn's text: a string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRecord(f"turn {i} {text_key!r} is {type(content).__name__}, expected a string or a list of parts")
    texts = []
    for j, part in enumerate(content):
        if isinstance(part, str):
            texts.append(part)
            continue
        kind = part.get("type", "text") if isinstance(part, Mapping) else None
        text = part.get("text") if isinstance(part, Mapping) else None
        if kind != "text" or not isinstance(text, str):
            shown = kind if isinstance(kind, str) else type(part).__name__
            raise BadRecord(f"turn {i} part {j} is {shown!r}, not text; only text parts can be trained on")
        texts.append(text)
    return "\n\n".join(t.strip() for t in texts if t.strip())


def sharegpt(record: Any) -> Conversation:
    if not isinstance(record, Mapping) or "conversations" not in record:
        raise BadRecord("record has no 'conversations' list")
    return _chat(record["conversations"], "from", "value", _SHAREGPT_ROLES)


def rewild(record: Any) -> Conversation:
    if isinstance(record, Mapping):
        for key in ("conversation", "messages"):
            if record.get(key) is not None:
                return _chat(record[key], "role", "content", _CHAT_ROLES)
        if record.get("conversations") is not None:
            return sharegpt(record)
    raise BadRecord("record has no 'conversation' (WildChat), 'messages' or 'conversations' (ShareGPT) list")


CONVERTERS: dict[str, Callable[[Any], Conversation]] = {"alpaca": alpaca, "sharegpt": sharegpt, "rewild": rewild}
