"""Reading raw records from JSON, JSON Lines and Parquet files, salvaging what a damaged file holds.

JSON Lines is salvaged line by line: every line that decodes is kept, every one that does not is
a `Skip`. A JSON document (a top-level array) cannot be resynchronised after an error, so a
truncated or corrupt one is a `DataError`, as are empty, binary and unreadable files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.data.errors import DataError, Skip

Located = tuple[str, Any]  # (where, decoded record)

_PARQUET_MAGIC = b"PAR1"
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


def read(path: str | Path) -> tuple[list[Located], list[Skip]]:
    """The records in `path` with their places, and the places that could not be decoded."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path (relative paths start at the current directory)")
    with path.open("rb") as file:
        magic = file.read(len(_PARQUET_MAGIC))
    if magic == _PARQUET_MAGIC or path.suffix == ".parquet":
        return _parquet(path), []
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: file is empty; point at a file with records or regenerate it")
    if b"\x00" in raw[:8192]:
        raise DataError(f"{path}: binary data, not JSON, JSON Lines or Parquet text; check the file type")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: not UTF-8 text (bad byte at offset {error.start}); re-encode it as UTF-8 or check the file type"
        ) from None
    if path.suffix in _JSONL_SUFFIXES:
        return _jsonl(text)
    if text.lstrip().startswith("["):
        return _json_array(path, text), []
    return _single_document(text) or _jsonl(text)


def records_of(rows: Iterable[Any]) -> list[Located]:
    """Rows from an in-memory source (a hub dataset), placed by index."""
    return [(f"record {i}", row) for i, row in enumerate(rows)]


def _json_array(path: Path, text: str) -> list[Located]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}: invalid JSON at line {error.lineno} column {error.colno} ({error.msg}), "
            "probably truncated; restore the file, or convert it to JSON Lines so bad records can be skipped"
        ) from None
    return records_of(document)


def _single_document(text: str) -> tuple[list[Located], list[Skip]] | None:
    """A file holding exactly one JSON object is one record; anything else is not this case."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return None
    return ([("record 0", document)], []) if isinstance(document, dict) else None


def _jsonl(text: str) -> tuple[list[Located], list[Skip]]:
    good: list[Located] = []
    bad: list[Skip] = []
    for number, line in _numbered_lines(text):
        try:
            good.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            bad.append(Skip(f"line {number}", f"invalid JSON ({error.msg} at column {error.colno})"))
    return good, bad


def _numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def _parquet(path: Path) -> list[Located]:
    import pyarrow
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path)
    except (pyarrow.ArrowException, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: not a readable Parquet file ({reason}); re-export or re-download it") from None
    return records_of(table.to_pylist())
