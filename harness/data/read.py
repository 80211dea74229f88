"""Reading raw records from JSON, JSON Lines and Parquet files, salvaging what a damaged file holds.

Every record that parses is kept, whatever happened to its neighbours, and every loss is a `Skip`
with its place:

- **JSON Lines** is read line by line: a line that does not decode (cut short, stray invalid UTF-8
  bytes, NULs, a broken line) is one `Skip`, and costs nothing else. Lines end with ``\\n``,
  ``\\r\\n`` or ``\\r``, mixed freely; a byte-order mark (at the start, or at the start of a line of
  concatenated files) is ignored. U+2028 and other Unicode line separators inside a record are text.
- **A JSON array** (a top-level ``[...]`` of objects) is read element by element. Where it is
  damaged, the records before the damage are kept and reading resumes at the next record boundary
  after it (a ``,`` then an object with every key the records before it all have, its ``{`` at the
  first record's indentation when the file is pretty-printed);
  the damaged stretch is one `Skip` whose ``count`` estimates the records it held (its length over
  the mean record length; the places of later records count it as one). An array cut short (an
  interrupted write or download) keeps every record before the cut; NUL padding after its closing
  bracket (what a crash can leave) loses nothing.
- **Compressed files** (gzip, bzip2, Zstandard; :mod:`harness.data.compression`) are decompressed as
  far as they go; a stream that stops early is a `Skip` at ``end of data``, and the records before
  it are read as above.
- Invalid UTF-8 bytes are read as NUL characters, which no JSON text may hold, so they damage exactly
  the line or record they sit in.

Empty files, files with nothing but damage (binary data, another encoding) and unreadable Parquet
files are a `DataError`, one line.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.data import compression
from harness.data.errors import DataError, Skip

Located = tuple[str, Any]  # (where, decoded record)

_PARQUET_MAGIC = b"PAR1"
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_LINE_END = re.compile(r"\r\n|\r|\n")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_BOM = "\ufeff"


def _bad_bytes_as_nul(error: UnicodeDecodeError) -> tuple[str, int]:
    return "\x00" * (error.end - error.start), error.end


codecs.register_error("gridlab-nul", _bad_bytes_as_nul)


def read(path: str | Path) -> tuple[list[Located], list[Skip]]:
    """The records in `path` with their places, and the places that could not be decoded."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path (relative paths start at the current directory)")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error}); check its permissions") from None
    if raw[: len(_PARQUET_MAGIC)] == _PARQUET_MAGIC or path.suffix.lower() == ".parquet":
        return _parquet(path), []
    unpacked = compression.decompress(path, raw)
    raw = unpacked.data
    if not raw.strip():
        what = f"decompresses to nothing ({unpacked.problem})" if unpacked.problem else "file is empty"
        raise DataError(f"{path}: {what}; point at a file with records, or download it again")
    good, bad = parse(raw, compression.inner_suffix(path) if unpacked.kind else path.suffix.lower())
    if unpacked.problem:
        bad.append(Skip("end of data", f"{unpacked.problem}; any records after that point are lost"))
    if not good:
        _refuse_unreadable(path, raw)
    return good, bad


def parse(raw: bytes, suffix: str = "") -> tuple[list[Located], list[Skip]]:
    """The records in `raw` (JSON Lines, a JSON array or one JSON object), salvaged."""
    text = raw.decode("utf-8", errors="gridlab-nul")
    if text.startswith(_BOM):
        text = text[1:]
    if suffix in _JSONL_SUFFIXES:
        return _jsonl(text)
    start = _WHITESPACE.match(text).end()
    if text.startswith("[", start):
        return _json_array(text, start + 1)
    return _single_document(text) or _jsonl(text)


def records_of(rows: Iterable[Any]) -> tuple[list[Located], list[Skip]]:
    """Rows from an in-memory or streamed source (a hub dataset), placed by index. A source that
    fails part way keeps the rows before the failure and reports the rest as lost."""
    good: list[Located] = []
    iterator = iter(rows)
    while True:
        try:
            row = next(iterator)
        except StopIteration:
            return good, []
        except Exception as error:  # datasets and pyarrow raise many kinds on a damaged shard
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            return good, [Skip(f"record {len(good)}", f"the dataset could not be read past here ({reason}); "
                                                       "the rows after it are lost")]
        good.append((f"record {len(good)}", row))


def _refuse_unreadable(path: Path, raw: bytes) -> None:
    """Nothing decoded: say what the file seems to be instead."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{path}: binary data, not JSON, JSON Lines or Parquet (NUL bytes from offset {nul:,}) "
                        "and no record in it decodes; check the file type, or download it again")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (bad byte at offset {error.start:,}) and no record in it decodes; "
                        "re-encode it as UTF-8 or check the file type") from None


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
        if "\x00" in line:
            bad.append(Skip(f"line {number}", "damaged line (invalid UTF-8 or NUL bytes)"))
            continue
        try:
            good.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            bad.append(Skip(f"line {number}", f"invalid JSON ({error.msg} at column {error.colno})"))
    return good, bad


def _numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(_LINE_END.split(text), start=1):
        line = line.lstrip(_BOM)
        if line.strip():
            yield number, line


# --- JSON arrays ------------------------------------------------------------------------------


def _json_array(text: str, pos: int) -> tuple[list[Located], list[Skip]]:
    """The elements of the array whose ``[`` ends just before `pos`, salvaged (see the module)."""
    good: list[Located] = []
    damage: list[tuple[int, int, int, str]] = []  # (index, start, end, reason) of each damaged stretch
    record_chars = 0
    boundary = _boundary_pattern(text, pos)
    n = len(text)
    index = 0
    while True:
        pos = _WHITESPACE.match(text, pos).end()
        if pos >= n:
            damage.append((index, pos, n, "the array is cut short here (a truncated file or interrupted write)"))
            break
        if text[pos] == "]":
            after = _WHITESPACE.match(text, pos + 1).end()
            if not text[after:].strip(" \t\r\n\x00"):  # the end (NUL padding after it loses no record)
                break
            problem_at, reason = after, "text after the array's closing bracket at"
        else:
            try:
                value, end = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError as error:
                problem_at, reason = error.pos, f"invalid JSON: {error.msg}" + ("" if error.msg.endswith(" at") else " at")
            else:
                after = _WHITESPACE.match(text, end).end()
                if after >= n or text[after] in ",]":
                    good.append((f"record {index}", value))
                    record_chars += end - pos
                    index += 1
                    pos = after + 1 if after < n and text[after] == "," else after
                    continue
                problem_at, reason = after, "expected ',' or ']' after a record at"
        resume = _resync(text, max(problem_at, pos + 1), boundary, _keys(good))
        line, column = _line_column(text, problem_at)
        damage.append((index, pos, resume if resume is not None else n, f"{reason} line {line} column {column}"))
        index += 1
        if resume is None:
            break
        pos = resume
    mean = record_chars / len(good) if good else 0.0
    bad = []
    for index, start, end, reason in damage:
        count = max(1, round((end - start) / mean)) if mean else 1
        resumed = ("; read again from line {} column {}".format(*_line_column(text, end)) if end < n
                   else "; nothing after it could be read (the file may be cut short)" if start < n else "")
        about = f", about {count} records lost" if count > 1 else ""
        bad.append(Skip(f"record {index}", f"{reason}{about}{resumed}", count))
    return good, bad


def _boundary_pattern(text: str, pos: int) -> re.Pattern:
    """Where a record may start after damage: ``,`` then ``{``; in a pretty-printed file, with the
    ``{`` at the first record's indentation (so a nested object is not taken for a record)."""
    first = _WHITESPACE.match(text, pos)
    gap = text[first.start() : first.end()]
    if "\n" in gap:
        indent = re.escape(gap[gap.rindex("\n") + 1 :])
        return re.compile(r",[ \t]*\r?\n" + indent + r"(?=\{)")
    return re.compile(r",[ \t\r\n]*(?=\{)")


def _keys(good: list[Located], sample: int = 100) -> frozenset[str]:
    """The keys every one of the first `sample` records has."""
    keys = [frozenset(value) for _, value in good[:sample] if isinstance(value, dict)]
    return frozenset.intersection(*keys) if keys else frozenset()


def _resync(text: str, start: int, boundary: re.Pattern, keys: frozenset[str]) -> int | None:
    """The start of the first whole record after `start`, or None: an object that decodes, is
    followed by ``,`` or ``]`` or the end, and has every key the records before it all have, so
    that a turn nested in a damaged record (WildChat's turns share ``language``, ``toxic``, ...
    with their record) is not taken for a record."""
    for match in boundary.finditer(text, start):
        try:
            value, end = _DECODER.raw_decode(text, match.end())
        except json.JSONDecodeError:
            continue
        if keys and not (isinstance(value, dict) and keys <= value.keys()):
            continue
        after = _WHITESPACE.match(text, end).end()
        if after >= len(text) or text[after] in ",]":
            return match.end()
    return None


def _line_column(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _parquet(path: Path) -> list[Located]:
    import pyarrow
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path)
    except (pyarrow.ArrowException, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: not a readable Parquet file ({reason}); re-export or re-download it") from None
    return [(f"record {i}", row) for i, row in enumerate(table.to_pylist())]
