"""Pretraining text every clone has: the Python standard library's own source files.

The ReLU-vs-GELU study trains on codeparrot (Python code from GitHub); the standard library is
the same kind of data and is on every machine that runs gridlab, so pretraining needs no
network and no shared data folder. Three corpora:

- ``python``: standard-library modules (no tests, no IDLE/2to3/turtle demos), files taken in a
  fixed order (sha256 of their relative path) until ``max_chars``;
- ``synthetic``: the synthetic instruction records (:mod:`harness.data.synthetic`, seed
  ``SYNTHETIC_SEED``, apart from the fine-tuning seeds) rendered with the prompt template;
- ``mixed``: both, ``SYNTHETIC_SHARE`` of the characters synthetic, documents interleaved.

Documents are split into train and validation by document (every ``VALIDATION_EVERY``-th),
joined with the tokenizer's end-of-sequence token, and tokenized once. The standard library
differs a little between Python versions, so a corpus says which one it read and its sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import sys
import sysconfig
from pathlib import Path

KINDS = ("python", "synthetic", "mixed")
EXCLUDED_PARTS = frozenset({"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "site-packages",
                            "dist-packages", "__pycache__", "pydoc_data"})
SYNTHETIC_SEED = 12_345
SYNTHETIC_SHARE = 0.25
VALIDATION_EVERY = 20


@dataclasses.dataclass(frozen=True)
class Corpus:
    kind: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    sha256: str  # of the documents, in order
    python: str  # the interpreter whose standard library was read

    @property
    def chars(self) -> int:
        return sum(map(len, self.train)) + sum(map(len, self.validation))


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def python_files(root: Path | None = None) -> list[Path]:
    """The standard library's modules, in the corpus's fixed order."""
    root = root or stdlib_root()
    files = [p for p in root.rglob("*.py") if not EXCLUDED_PARTS & set(p.relative_to(root).parts)]
    return sorted(files, key=lambda p: hashlib.sha256(p.relative_to(root).as_posix().encode()).hexdigest())


def python_documents(max_chars: int, root: Path | None = None) -> list[str]:
    documents, total = [], 0
    for path in python_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if not text.strip():
            continue
        documents.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return documents


def synthetic_documents(max_chars: int) -> list[str]:
    from harness.data import formats, synthetic, template

    documents, total, batch = [], 0, 0
    while total < max_chars:
        for record in synthetic.records(1000, SYNTHETIC_SEED + batch):
            text = template.render(formats.alpaca(record))
            documents.append(text)
            total += len(text)
            if total >= max_chars:
                break
        batch += 1
    return documents


def build(kind: str, max_chars: int) -> Corpus:
    if kind not in KINDS:
        raise ValueError(f"unknown corpus {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "python":
        documents = python_documents(max_chars)
    elif kind == "synthetic":
        documents = synthetic_documents(max_chars)
    else:
        code = python_documents(int(max_chars * (1 - SYNTHETIC_SHARE)))
        text = synthetic_documents(int(max_chars * SYNTHETIC_SHARE))
        documents = code + text
        random.Random(0).shuffle(documents)
    digest = hashlib.sha256()
    for document in documents:
        digest.update(document.encode())
        digest.update(b"\0")
    train = tuple(d for i, d in enumerate(documents) if i % VALIDATION_EVERY != VALIDATION_EVERY - 1)
    validation = tuple(d for i, d in enumerate(documents) if i % VALIDATION_EVERY == VALIDATION_EVERY - 1)
    return Corpus(kind, train, validation, digest.hexdigest(), sys.version.split()[0])


def token_stream(documents, tokenizer):
    """One long tensor of token ids: the documents end to end, each closed by the EOS token."""
    import torch

    eos = tokenizer.eos_token_id
    ids: list[int] = []
    encoded = tokenizer(list(documents), add_special_tokens=False)["input_ids"]
    for doc in encoded:
        ids.extend(doc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)
