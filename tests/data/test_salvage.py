"""Data that survives corruption: files damaged in each way the seeds' RE-WILD copies were, and more.

Each test damages a file it writes itself and checks what is kept (every record that parses) and
what is reported (every loss, with its place); the share-of-bad-records limit still refuses a file
that is mostly broken.
"""

from __future__ import annotations

import bz2
import gzip
import json
import sys
from pathlib import Path

import pytest

from harness.data import compression, formats, loaders, read, synthetic
from harness.data.conversation import Conversation, Turn
from harness.data.errors import DataError

pytestmark = pytest.mark.unit

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _chat(i: int) -> dict:
    """A WildChat-format record (the RE-WILD mix's shape) with extra per-turn fields."""
    return {
        "conversation_id": f"c{i}",
        "model": "gpt-4",
        "conversation": [
            {"role": "user", "content": f"Question {i}?", "language": "English", "toxic": False, "redacted": False},
            {"role": "assistant", "content": f"Answer {i}.", "language": "English", "toxic": False, "redacted": False},
        ],
        "turn": 1,
        "language": "English",  # WildChat's turns share these keys with their record
        "toxic": False,
        "redacted": False,
    }


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def _answers(loaded) -> list[str]:
    return [c.turns[-1].content for c in loaded.conversations]


# -- JSON arrays --------------------------------------------------------------------------------


@pytest.mark.parametrize("indent", [None, 2])
def test_truncated_array_keeps_the_records_before_the_cut(tmp_path, indent):
    text = json.dumps([_chat(i) for i in range(50)], indent=indent)
    cut = text.index('"c40"')  # inside record 40
    path = tmp_path / "rewild.json"
    path.write_text(text[:cut])
    loaded = loaders.load(path, "rewild")
    assert _answers(loaded) == [f"Answer {i}." for i in range(40)]
    (skip,) = loaded.report.skipped
    assert skip.where == "record 40" and "cut short" in skip.reason and skip.count == 1


@pytest.mark.parametrize("indent", [None, 2])
def test_damage_inside_an_array_costs_only_the_records_it_touches(tmp_path, indent):
    records = [_chat(i) for i in range(60)]
    text = json.dumps(records, indent=indent).encode()
    start = text.index(b"Answer 7.")
    text = text[:start] + b"\x00" * 5 + text[start + 5 :]  # NULs inside record 7's last turn
    start = text.index(b"Question 30?")
    text = text[:start] + b"\xff\xfe" + text[start + 2 :]  # invalid UTF-8 inside record 30
    path = tmp_path / "rewild.json"
    path.write_bytes(text)
    loaded = loaders.load(path, "rewild")
    kept = {f"Answer {i}." for i in range(60)} - {"Answer 7.", "Answer 30."}
    assert set(_answers(loaded)) == kept and len(loaded.conversations) == 58
    assert [s.where for s in loaded.report.skipped] == ["record 7", "record 30"]
    assert all("read again from line" in s.reason for s in loaded.report.skipped)
    assert loaded.report.lost == 2 and loaded.report.total == 60


def test_nul_padding_after_a_whole_array_loses_nothing(tmp_path):
    path = tmp_path / "padded.json"
    path.write_bytes(json.dumps([_chat(i) for i in range(5)]).encode() + b"\n" + b"\x00" * 4096)
    loaded = loaders.load(path, "rewild")
    assert len(loaded.conversations) == 5 and not loaded.report.skipped


def test_a_long_damaged_stretch_of_an_array_counts_as_the_records_it_held(tmp_path):
    text = json.dumps(synthetic.records(100, seed=1), indent=2).encode()
    a, b = text.index(b"{", 100), len(text) // 2
    path = tmp_path / "half.json"
    path.write_bytes(text[:a] + b"\x00" * (b - a) + text[b:])  # a run of NULs over half the file
    with pytest.raises(DataError) as error:
        loaders.load(path, "alpaca")
    message = _one_line(error)
    assert message.startswith(str(path)) and "over the allowed 10%" in message and "about" in message


def test_a_pretty_printed_array_resumes_at_a_record_not_at_a_nested_turn(tmp_path):
    """After damage in record 3, reading resumes at record 4: the turns left of record 3 (objects
    after a comma, too) are not taken for records."""
    conversations = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"},
                                        {"from": "human", "value": "more"}, {"from": "gpt", "value": f"b{i}"}]}
                     for i in range(10)]
    text = json.dumps(conversations, indent=2)
    cut = text.index('"q3"')
    path = tmp_path / "sharegpt.json"
    path.write_text(text[:cut] + "@@" + text[cut + 2 :])
    loaded = loaders.load(path, "sharegpt", max_bad_share=0.2)
    assert _answers(loaded) == [f"b{i}" for i in range(10) if i != 3]
    assert [(s.where, s.count) for s in loaded.report.skipped] == [("record 3", 1)]


# -- JSON Lines ---------------------------------------------------------------------------------


def test_bad_bytes_nuls_and_broken_lines_cost_only_their_lines(tmp_path):
    lines = [json.dumps(_chat(i)).encode() for i in range(40)]
    lines[3] = lines[3][:20] + b"\xc3\x28" + lines[3][22:]  # invalid UTF-8
    lines[9] = lines[9][:15] + b"\x00\x00\x00" + lines[9][15:]  # NULs
    lines[17] = lines[17][: len(lines[17]) // 2]  # broken (half a line)
    lines[25] = b"\x00" * 4096  # a block of zeros, as a crash leaves
    path = tmp_path / "rewild.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    loaded = loaders.load(path, "rewild")
    assert len(loaded.conversations) == 36
    assert [s.where for s in loaded.report.skipped] == ["line 4", "line 10", "line 18", "line 26"]
    assert "invalid UTF-8 or NUL" in loaded.report.skipped[0].reason
    assert "invalid JSON" in loaded.report.skipped[2].reason


def test_mixed_line_endings_byte_order_marks_and_unicode_separators(tmp_path):
    records = [_chat(i) for i in range(6)]
    records[2]["conversation"][1]["content"] = "one\u2028two\u0085three"  # legal inside a JSON string
    encoded = [json.dumps(r, ensure_ascii=False).encode() for r in records]
    raw = (b"\xef\xbb\xbf" + encoded[0] + b"\r\n" + encoded[1] + b"\n" + encoded[2] + b"\r"
           + b"\xef\xbb\xbf" + encoded[3] + b"\r\n\r\n" + encoded[4] + b"\n" + encoded[5])  # BOMs: concatenated files
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(raw)
    loaded = loaders.load(path, "rewild")
    assert not loaded.report.skipped and len(loaded.conversations) == 6
    assert loaded.conversations[2].turns[1].content == "one\u2028two\u0085three"
    array = tmp_path / "bom.json"
    array.write_bytes(b"\xef\xbb\xbf" + json.dumps(records).replace("}, {", "},\r\n{").encode())
    assert len(loaders.load(array, "rewild").conversations) == 6


def test_a_mostly_broken_jsonl_file_is_refused(tmp_path):
    lines = [json.dumps(r) for r in synthetic.records(10)] + ["\x00garbage"] * 15
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(DataError) as error:
        loaders.load(path, "alpaca")
    message = _one_line(error)
    assert "60.0% bad is over the allowed 10%" in message and "raise max_bad_share" in message


# -- compressed files ---------------------------------------------------------------------------


def _jsonl_bytes(n: int) -> bytes:
    return "".join(json.dumps(_chat(i)) + "\n" for i in range(n)).encode()


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.bz2", ".jsonl.zst", ".json.gz"])
def test_compressed_files_are_read(tmp_path, suffix):
    pytest.importorskip("zstandard")
    import zstandard

    data = _jsonl_bytes(30) if ".jsonl" in suffix else json.dumps([_chat(i) for i in range(30)]).encode()
    pack = {".gz": gzip.compress, ".bz2": bz2.compress, ".zst": zstandard.ZstdCompressor().compress}
    path = tmp_path / f"data{suffix}"
    path.write_bytes(pack[Path(suffix).suffix](data))
    loaded = loaders.load(path, "rewild")
    assert len(loaded.conversations) == 30 and not loaded.report.skipped


def test_concatenated_gzip_members_are_all_read(tmp_path):
    path = tmp_path / "two.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl_bytes(10)) + gzip.compress(_jsonl_bytes(5)))
    assert len(loaders.load(path, "rewild").conversations) == 15


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "zstd"])
def test_a_truncated_compressed_file_keeps_what_decompresses(tmp_path, kind):
    zstandard = pytest.importorskip("zstandard")
    data = _jsonl_bytes(4000)  # several hundred kB: many compressed blocks
    packed = {"gzip": lambda d: gzip.compress(d, mtime=0), "bzip2": lambda d: bz2.compress(d, 1),
              "zstd": lambda d: zstandard.ZstdCompressor(level=1).compress(d)}[kind](data)
    path = tmp_path / "cut.jsonl.x"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    loaded = loaders.load(path, "rewild", max_bad_share=1.0)
    n = len(loaded.conversations)
    assert 0 < n < 4000
    assert _answers(loaded) == [f"Answer {i}." for i in range(n)]  # the records before the cut, in order
    assert loaded.report.skipped[-1].where == "end of data"
    assert "cut short" in loaded.report.skipped[-1].reason


def test_corrupt_gzip_data_keeps_what_came_before(tmp_path):
    packed = bytearray(gzip.compress(_jsonl_bytes(4000), mtime=0))
    middle = len(packed) // 2
    packed[middle : middle + 64] = b"\xff" * 64
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(bytes(packed))
    loaded = loaders.load(path, "rewild", max_bad_share=1.0)
    assert 0 < len(loaded.conversations) < 4000
    assert "corrupt gzip data" in loaded.report.skipped[-1].reason


def test_zst_without_zstandard_is_refused_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "data.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 16)
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard now raises ImportError
    with pytest.raises(DataError) as error:
        loaders.load(path, "rewild")
    message = _one_line(error)
    assert message.startswith(str(path)) and "pip install zstandard" in message


def test_inner_suffix():
    assert compression.inner_suffix(Path("a.jsonl.gz")) == ".jsonl"
    assert compression.inner_suffix(Path("a.JSON.zst")) == ".json"
    assert compression.inner_suffix(Path("a.gz")) == ""


# -- content parts and hub rows -----------------------------------------------------------------


def test_content_given_as_parts_is_joined():
    record = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Look at this."}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat.", "image": None}]},  # null key: a hub row
    ]}
    assert formats.rewild(record) == Conversation((Turn("user", "Look at this.\n\nWhat is it?"), Turn("assistant", "A cat.")))
    assert formats.rewild({"conversation": [{"role": "user", "content": ["a", "b"]},
                                            {"role": "assistant", "content": "c"}]}).turns[0].content == "a\n\nb"
    with pytest.raises(formats.BadRecord, match="part 1 is 'image_url', not text"):
        formats.rewild({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"},
                                                                  {"type": "image_url", "image_url": "u"}]},
                                     {"role": "assistant", "content": "y"}]})


def test_wildchat_rows_in_parquet_with_nulls_and_parts(tmp_path):
    """Parquet (as the hub stores WildChat-format sets) fills a key one turn lacks with null and
    gives every part every part key; such rows read as their JSON twins."""
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet

    rows = [_chat(i) for i in range(10)]
    rows[3]["conversation"][0]["header"] = {"user-agent": "x"}  # one turn with an extra field
    path = tmp_path / "rewild.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    stored = pyarrow.parquet.read_table(path).to_pylist()
    assert stored[0]["conversation"][0]["header"] is None  # filled with null
    loaded = loaders.load(path, "rewild")
    assert _answers(loaded) == [f"Answer {i}." for i in range(10)] and not loaded.report.skipped


def test_hub_rows_get_the_same_treatment(monkeypatch):
    """A hub dataset's rows go through the same converters, skips, part-joining and limit; a
    dataset that fails part way keeps the rows before the failure."""
    rows = [_chat(i) for i in range(20)]
    rows[4] = {"conversation": None, "messages": None}  # a Parquet row with neither filled in
    rows[6]["conversation"][1]["content"] = [{"type": "text", "text": "Answer 6.", "image": None}]

    def streamed(name, split):
        yield from rows[:15]
        raise OSError("Parquet magic bytes not found in footer")

    monkeypatch.setattr(loaders, "_hub_rows", streamed)
    loaded = loaders.load("nyu-dice-lab/wildchat50m-rewild-sft-385700", "rewild", max_bad_share=0.2)
    assert _answers(loaded) == [f"Answer {i}." for i in range(15) if i != 4]
    assert [s.where for s in loaded.report.skipped] == ["record 4", "record 15"]
    assert "could not be read past here (Parquet magic bytes" in loaded.report.skipped[1].reason
    monkeypatch.setattr(loaders, "_hub_rows", lambda name, split: rows[:2] + [{"x": 1}] * 8)
    with pytest.raises(DataError, match="80.0% bad is over the allowed 10%"):
        loaders.load("owner/name", "rewild")


def test_a_hub_file_is_fetched_and_salvaged_like_a_local_one(tmp_path, monkeypatch):
    text = json.dumps([{"id": str(i), "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": f"a{i}"}]}
                       for i in range(30)], indent=2)
    local = tmp_path / "ShareGPT_V3_unfiltered_cleaned_split.json"
    local.write_text(text[: text.index('"id": "29"')])  # an interrupted download
    calls = []

    def download(repo, filename, *, repo_type, revision):
        calls.append((repo, filename, repo_type, revision))
        return str(local)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    source = "hf://datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/ShareGPT_V3_unfiltered_cleaned_split.json"
    loaded = loaders.load(source, "sharegpt")
    assert len(loaded.conversations) == 29 and loaded.report.skipped[0].where == "record 29"
    assert calls == [("anon8231489123/ShareGPT_Vicuna_unfiltered", "ShareGPT_V3_unfiltered_cleaned_split.json",
                      "dataset", None)]
    assert loaders.parse_hub_file("hf://datasets/o/n@v1/sub/f.jsonl") == ("o/n", "v1", "sub/f.jsonl")
    with pytest.raises(DataError, match="a hub file is hf://datasets/OWNER/NAME"):
        loaders.load("hf://datasets/just-a-name", "sharegpt")


def test_an_unreachable_hub_file_is_a_network_error_in_one_line(monkeypatch):
    import huggingface_hub

    from harness.data.errors import DataUnavailable

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nmore detail")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(DataUnavailable) as error:
        loaders.load("hf://datasets/o/n/f.json", "sharegpt")
    assert "hf download o/n f.json --repo-type dataset" in _one_line(error)


def test_a_hub_file_that_does_not_exist_is_invalid_not_retried(monkeypatch):
    import huggingface_hub

    def missing(*args, **kwargs):
        raise huggingface_hub.errors.EntryNotFoundError("404 Client Error: Entry Not Found for url")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    with pytest.raises(DataError) as error:
        loaders.load("hf://datasets/o/n/typo.json", "sharegpt")
    assert type(error.value) is DataError and "the hub has no such file" in _one_line(error)


def test_records_of_a_plain_list():
    assert read.records_of([{"a": 1}, {"b": 2}]) == ([("record 0", {"a": 1}), ("record 1", {"b": 2})], [])


# -- the real public files, damaged -------------------------------------------------------------


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not here (the shared public data lives beside the repository)")
    return SHARED_DATA


def test_the_real_sharegpt_file_cut_and_gzipped(shared_data, tmp_path):
    raw = (shared_data / "sharegpt_dummy_conversation.json").read_bytes()
    path = tmp_path / "sharegpt.json.gz"
    path.write_bytes(gzip.compress(raw[: len(raw) * 9 // 10]))  # the last tenth lost
    loaded = loaders.load(path, "sharegpt")
    assert 430 <= len(loaded.conversations) < 500
    assert loaded.report.lost == 1 and "cut short" in loaded.report.skipped[0].reason


def test_the_real_alpaca_file_with_a_damaged_stretch(shared_data, tmp_path):
    raw = bytearray((shared_data / "alpaca_5000.json").read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 2000] = b"\x00" * 2000  # about five records' worth
    path = tmp_path / "alpaca.json"
    path.write_bytes(bytes(raw))
    loaded = loaders.load(path, "alpaca")
    damaged = [s for s in loaded.report.skipped if "read again" in s.reason]
    assert len(damaged) == 1 and 4 <= damaged[0].count <= 12
    assert loaded.report.total == len(loaded.conversations) + loaded.report.lost
    assert 4970 <= loaded.report.total <= 5010 and len(loaded.conversations) >= 4975
