"""Compressed data files (gzip, bzip2, Zstandard), decompressed as far as they go.

The kind is read from the file's first bytes, not its name, so a ``.json.gz`` renamed ``.json`` is
still read. A stream that is cut short or corrupt keeps everything decompressed before the damage:
:func:`decompress` returns those bytes and says where and why it stopped, and the reader reports
that as a loss (an interrupted download of a ``.jsonl.gz`` costs its tail, not the file).
Concatenated streams (``cat a.gz b.gz``, multi-frame ``.zst``) are read to the end.

Zstandard needs the ``zstandard`` package (a gridlab dependency); without it a ``.zst`` file is
refused in one line naming the package.
"""

from __future__ import annotations

import bz2
import dataclasses
import zlib
from pathlib import Path

from harness.data.errors import DataError

#: first bytes -> kind
_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\x28\xb5\x2f\xfd": "zstd"}
_CHUNK = 1 << 13  # compressed bytes per step: a corrupt byte costs at most the output of one step
SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bzip2", ".zst": "zstd", ".zstd": "zstd"}


@dataclasses.dataclass(frozen=True)
class Decompressed:
    data: bytes
    kind: str | None  # None: the file was not compressed
    problem: str | None = None  # why decompression stopped before the end of the file, if it did


def kind_of(head: bytes) -> str | None:
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def inner_suffix(path: Path) -> str:
    """The suffix that says what the decompressed data is: ``.jsonl`` for ``a.jsonl.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def decompress(path: Path, raw: bytes) -> Decompressed:
    kind = kind_of(raw[:4])
    if kind is None:
        return Decompressed(raw, None)
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise DataError(f"{path}: a Zstandard (.zst) file, and the zstandard package is not installed; "
                            "pip install zstandard, or decompress the file first (zstd -d)") from None
        new, errors = zstandard.ZstdDecompressor().decompressobj, (zstandard.ZstdError,)
    elif kind == "gzip":
        new, errors = (lambda: zlib.decompressobj(wbits=31)), (zlib.error,)
    else:
        new, errors = bz2.BZ2Decompressor, (OSError, ValueError)
    out: list[bytes] = []
    rest, problem = raw, None
    while rest and problem is None:
        stream, pos = new(), 0
        while True:  # in chunks, so that what decompressed before a corrupt byte is kept
            chunk = rest[pos : pos + _CHUNK]
            pos += len(chunk)
            try:
                out.append(stream.decompress(chunk))
            except errors as error:
                problem = f"corrupt {kind} data ({str(error).splitlines()[0] or type(error).__name__})"
                break
            if stream.eof:
                rest = stream.unused_data + rest[pos:]
                break
            if pos >= len(rest):
                problem = f"the {kind} stream is cut short (a truncated file or an interrupted download)"
                out.append(_flush(stream))
                break
        if not rest.strip(b"\x00"):  # gzip writers may pad with NULs after the last member
            break
    data = b"".join(out)
    if problem:
        problem += f" after {len(data):,} decompressed bytes"
    return Decompressed(data, kind, problem)


def _flush(stream) -> bytes:
    flush = getattr(stream, "flush", None)
    if flush is None:
        return b""
    try:
        return flush()
    except Exception:  # a broken stream may refuse to flush; what it already returned is kept
        return b""
