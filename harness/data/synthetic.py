"""A deterministic synthetic instruction dataset, so the demo and tests need no external file.

Records are in Alpaca form (``instruction``, ``input``, ``output``) and come from small string
and arithmetic tasks whose answers are computed, so a model can actually learn them. The same
`seed` always gives the same records.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    "apple", "river", "planet", "garden", "silver", "window", "rocket", "candle", "forest", "button",
    "market", "yellow", "pencil", "island", "summer", "winter", "bridge", "castle", "dragon", "engine",
    "flower", "guitar", "hammer", "jacket", "kitten", "ladder", "mirror", "needle", "orange", "pepper",
    "rabbit", "saddle", "ticket", "tunnel", "violet", "wallet", "zipper", "anchor", "basket", "cactus",
    "dinner", "falcon", "ginger", "harbor", "insect", "jungle", "lemon", "meadow", "number", "oyster",
)  # fmt: skip


def _add(rng: random.Random) -> dict:
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    return {"instruction": "Add the two numbers.", "input": f"{a} + {b}", "output": str(a + b)}


def _subtract(rng: random.Random) -> dict:
    a, b = sorted((rng.randint(0, 999), rng.randint(0, 999)), reverse=True)
    return {"instruction": "Subtract the second number from the first.", "input": f"{a} - {b}", "output": str(a - b)}


def _reverse(rng: random.Random) -> dict:
    word = rng.choice(WORDS)
    return {"instruction": "Reverse the letters of the word.", "input": word, "output": word[::-1]}


def _upper(rng: random.Random) -> dict:
    words = " ".join(rng.sample(WORDS, 3))
    return {"instruction": "Write the words in capital letters.", "input": words, "output": words.upper()}


def _sort(rng: random.Random) -> dict:
    words = rng.sample(WORDS, 4)
    return {
        "instruction": "Sort these words alphabetically.",
        "input": ", ".join(words),
        "output": ", ".join(sorted(words)),
    }


def _count(rng: random.Random) -> dict:
    word = rng.choice(WORDS)
    letter = rng.choice(word)
    return {
        "instruction": f"How many times does the letter '{letter}' appear in the word?",
        "input": word,
        "output": str(word.count(letter)),
    }


def _first_word(rng: random.Random) -> dict:
    words = rng.sample(WORDS, 3)
    # No input field: exercises the instruction-only form of an Alpaca record.
    return {"instruction": f"Which word comes first: {', '.join(words)}?", "input": "", "output": words[0]}


TASKS = (_add, _subtract, _reverse, _upper, _sort, _count, _first_word)


def records(n: int, seed: int = 0) -> list[dict]:
    """`n` Alpaca-form records, the same ones for the same `seed`."""
    rng = random.Random(seed)
    return [rng.choice(TASKS)(rng) for _ in range(n)]


def write_jsonl(path: str | Path, n: int, seed: int = 0) -> Path:
    """Write `records(n, seed)` as JSON Lines to `path` and return it."""
    path = Path(path)
    path.write_text("".join(json.dumps(record) + "\n" for record in records(n, seed)), encoding="utf-8")
    return path
