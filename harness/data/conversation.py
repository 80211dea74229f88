"""The one shape every data format is converted to: a conversation of role-tagged turns."""

from __future__ import annotations

import dataclasses

ROLES = ("system", "user", "assistant")


@dataclasses.dataclass(frozen=True)
class Turn:
    role: str  # one of ROLES
    content: str


@dataclasses.dataclass(frozen=True)
class Conversation:
    turns: tuple[Turn, ...]
