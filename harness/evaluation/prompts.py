"""MT-Bench-format prompt files: one JSON object per line with ``question_id``, ``category``
and ``turns`` (one or two user messages; the second is asked after the model's first answer).

Extra fields (MT-Bench's ``reference``) are ignored. A prompt set is named
``<file stem>@<first 8 hex digits of the file's sha256>``, so answers to two different files
that happen to share a name are never compared. ``demo`` names the small file that ships
with gridlab (``harness/evaluation/prompts/demo.jsonl``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.evaluation.errors import PromptFileError

SHIPPED = {"demo": Path(__file__).with_name("prompts") / "demo.jsonl"}
MAX_TURNS = 2


@dataclass(frozen=True)
class Question:
    question_id: str
    category: str | None
    turns: tuple[str, ...]


@dataclass(frozen=True)
class PromptSet:
    name: str
    path: str
    questions: tuple[Question, ...]

    @property
    def n_answers(self) -> int:
        return sum(len(q.turns) for q in self.questions)


def resolve(name_or_path: str | Path) -> Path:
    """A shipped prompt set's file (``demo``), or the given path."""
    return SHIPPED.get(str(name_or_path), Path(name_or_path).expanduser())


def load(name_or_path: str | Path, *, limit: int | None = None) -> PromptSet:
    """Read and check a prompt file; ``limit`` keeps the first questions only (the name
    records it). Raises PromptFileError naming the file and line."""
    path = resolve(name_or_path)
    fix = "give an MT-Bench-format .jsonl file (question_id, category, turns) or 'demo'"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PromptFileError(f"prompt file {path} not found", fix) from None
    except IsADirectoryError:
        raise PromptFileError(f"prompt file {path} is a folder", fix) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PromptFileError(f"prompt file {path} is not UTF-8 text", fix) from None
    questions: list[Question] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptFileError(f"{where}: not JSON ({exc.msg})", fix) from None
        question = _question(record, where, fix)
        if question.question_id in seen:
            raise PromptFileError(f"{where}: question_id {question.question_id} appears twice", "make the ids unique")
        seen.add(question.question_id)
        questions.append(question)
    if not questions:
        raise PromptFileError(f"prompt file {path} holds no questions", fix)
    digest = hashlib.sha256(raw).hexdigest()[:8]
    name = f"{path.stem}@{digest}"
    if limit is not None and limit < len(questions):
        questions = questions[:limit]
        name += f"[:{limit}]"
    return PromptSet(name=name, path=str(path), questions=tuple(questions))


def _question(record, where: str, fix: str) -> Question:
    if not isinstance(record, dict):
        raise PromptFileError(f"{where}: expected a JSON object, got {type(record).__name__}", fix)
    qid = record.get("question_id")
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or str(qid) == "":
        raise PromptFileError(f"{where}: question_id must be a number or a non-empty string", fix)
    category = record.get("category")
    if category is not None and not isinstance(category, str):
        raise PromptFileError(f"{where}: category must be a string", fix)
    turns = record.get("turns")
    if not isinstance(turns, list) or not 1 <= len(turns) <= MAX_TURNS:
        raise PromptFileError(f"{where}: turns must be a list of 1 or {MAX_TURNS} user messages", fix)
    if not all(isinstance(t, str) and t.strip() for t in turns):
        raise PromptFileError(f"{where}: every turn must be a non-empty string", fix)
    return Question(question_id=str(qid), category=category, turns=tuple(turns))
