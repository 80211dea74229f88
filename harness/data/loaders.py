"""Loading a data source into conversations, with a report of every record skipped.

A source is

- a local file (JSON, JSON Lines or Parquet, plain or gzip/bzip2/Zstandard compressed);
- one file of a hub dataset repository, ``hf://datasets/OWNER/NAME[@REVISION]/PATH/IN/REPO`` (the
  file users download, e.g. ShareGPT's ``ShareGPT_V3_unfiltered_cleaned_split.json``): fetched with
  ``huggingface_hub.hf_hub_download`` into the Hugging Face cache (a cached copy is used offline)
  and read as a local file, salvage included;
- otherwise a hub dataset name read with ``datasets.load_dataset``; its rows go through the same
  converters, skips and limit as a file's.

Damaged records are skipped and reported (:mod:`harness.data.read`); when more than
`max_bad_share` of them are bad the source is refused with a `DataError`, because a silently
half-empty dataset makes an ablation meaningless.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.data import formats, read
from harness.data.conversation import Conversation
from harness.data.errors import DataError, DataUnavailable, Skip, SkipReport

DEFAULT_MAX_BAD_SHARE = 0.10


@dataclasses.dataclass(frozen=True)
class Loaded:
    conversations: list[Conversation]
    report: SkipReport


def load(
    source: str | Path,
    format: str,
    *,
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
    split: str = "train",
) -> Loaded:
    """Conversations from `source` in `format` (alpaca, sharegpt or rewild) and the skip report.

    `split` is used only for a hub dataset name.
    """
    convert = formats.CONVERTERS.get(format)
    if convert is None:
        raise DataError(f"unknown data format {format!r}; use one of {', '.join(sorted(formats.CONVERTERS))}")
    if not 0.0 <= max_bad_share <= 1.0:
        raise DataError(f"max_bad_share is {max_bad_share}; give a share between 0 and 1")
    located, skipped = _read(source, split)
    total = len(located) + sum(skip.count for skip in skipped)
    conversations = []
    for where, record in located:
        try:
            conversations.append(convert(record))
        except formats.BadRecord as bad:
            skipped.append(Skip(where, str(bad)))
    report = SkipReport(str(source), total, tuple(sorted(skipped, key=_order)))
    if not conversations:
        raise DataError(f"{report.summary(show=3)}; no usable {format} record, check the file and the format")
    if report.bad_share > max_bad_share:
        raise DataError(
            f"{report.summary(show=3)}; {report.bad_share:.1%} bad is over the allowed {max_bad_share:.0%}: "
            "repair the file or raise max_bad_share"
        )
    return Loaded(conversations, report)


HUB_FILE_PREFIX = "hf://datasets/"


def _read(source: str | Path, split: str) -> tuple[list[read.Located], list[Skip]]:
    if str(source).startswith(HUB_FILE_PREFIX):
        return read.read(_hub_file(str(source)))
    if Path(source).exists() or not _looks_like_hub_name(str(source)):
        return read.read(source)
    return read.records_of(_hub_rows(str(source), split))


def parse_hub_file(source: str) -> tuple[str, str | None, str]:
    """(repo id, revision or None, path in the repository) of an ``hf://datasets/...`` source."""
    parts = source[len(HUB_FILE_PREFIX):].split("/")
    if len(parts) < 3 or not all(parts):
        raise DataError(f"{source}: a hub file is hf://datasets/OWNER/NAME[@REVISION]/PATH, e.g. "
                        "hf://datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/ShareGPT_V3_unfiltered_cleaned_split.json")
    owner, name, *path = parts
    name, _, revision = name.partition("@")
    return f"{owner}/{name}", revision or None, "/".join(path)


def _hub_file(source: str) -> Path:
    repo, revision, filename = parse_hub_file(source)
    import huggingface_hub

    missing = (huggingface_hub.errors.EntryNotFoundError, huggingface_hub.errors.RepositoryNotFoundError,
               huggingface_hub.errors.RevisionNotFoundError)
    try:
        return Path(huggingface_hub.hf_hub_download(repo, filename, repo_type="dataset", revision=revision))
    except Exception as error:  # offline, missing file, gated repo: the user needs one clear line
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, missing) and not isinstance(error, huggingface_hub.errors.GatedRepoError):
            raise DataError(f"{source}: the hub has no such file ({reason}); check the repository, revision and "
                            "file name (hf://datasets/OWNER/NAME[@REVISION]/PATH)") from None
        raise DataUnavailable(
            f"{source}: could not fetch {filename} from the hub dataset {repo} ({reason}); "
            f"download it where the hub is reachable (hf download {repo} {filename} --repo-type dataset)"
        ) from None


def _looks_like_hub_name(source: str) -> bool:
    """`owner/name` or a bare `name`, with no file suffix or path prefix."""
    return not source.startswith((".", "/", "~")) and source.count("/") <= 1 and Path(source).suffix == ""


def _hub_rows(name: str, split: str):
    import datasets

    try:
        return datasets.load_dataset(name, split=split)
    except Exception as error:  # the hub raises many types; the user needs one clear line
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataUnavailable(
            f"{name}: neither a local file nor a loadable hub dataset ({reason}); "
            "check the path, or download the dataset where the hub is reachable"
        ) from None


def _order(skip: Skip) -> tuple[int, str, int]:
    """Places in file order: numbered lines and records first, ``end of data`` last."""
    kind, _, number = skip.where.partition(" ")
    return (0, kind, int(number)) if number.isdigit() else (1, skip.where, 0)
