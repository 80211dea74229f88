"""Data loaders: formats, salvage of damaged files, template, tokenisation and split."""

from __future__ import annotations

import json

import pyarrow
import pyarrow.parquet
import pytest

from harness.data import formats, loaders, split, synthetic, template, tokenization
from harness.data.conversation import Conversation, Turn
from harness.data.errors import DataError

pytestmark = pytest.mark.unit

SHAREGPT = {
    "id": "a",
    "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello!"},
        {"from": "human", "value": "Add 2 and 3."},
        {"from": "gpt", "value": "5"},
    ],
}
REWILD = {"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]}


def _jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# -- valid files -----------------------------------------------------------------------------


def test_alpaca_json_jsonl_and_parquet_give_the_same_conversations(tmp_path):
    records = synthetic.records(30, seed=3)
    (tmp_path / "a.json").write_text(json.dumps(records))
    _jsonl(tmp_path / "a.jsonl", records)
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(records), tmp_path / "a.parquet")
    loaded = [loaders.load(tmp_path / name, "alpaca") for name in ("a.json", "a.jsonl", "a.parquet")]
    assert loaded[0].conversations == loaded[1].conversations == loaded[2].conversations
    assert len(loaded[0].conversations) == 30 and not loaded[0].report.skipped
    first = loaded[0].conversations[0]
    assert [t.role for t in first.turns] == ["user", "assistant"]
    assert first.turns[1].content == records[0]["output"]


def test_sharegpt_and_rewild_chats(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps([SHAREGPT]))
    conversation = loaders.load(tmp_path / "s.json", "sharegpt").conversations[0]
    assert [t.role for t in conversation.turns] == ["system", "user", "assistant", "user", "assistant"]
    _jsonl(tmp_path / "r.jsonl", [REWILD, SHAREGPT])  # RE-WILD accepts both chat shapes
    rewild = loaders.load(tmp_path / "r.jsonl", "rewild").conversations
    assert rewild[0] == Conversation((Turn("user", "Name a colour."), Turn("assistant", "Blue.")))
    assert rewild[1] == conversation
    rows = [{"messages": REWILD["messages"]}] * 3
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), tmp_path / "r.parquet")
    assert len(loaders.load(tmp_path / "r.parquet", "rewild").conversations) == 3


def test_trailing_user_turn_is_dropped():
    record = {"conversations": SHAREGPT["conversations"] + [{"from": "human", "value": "Thanks"}]}
    assert formats.sharegpt(record).turns[-1] == Turn("assistant", "5")


# -- damaged files ---------------------------------------------------------------------------


def test_corrupted_jsonl_is_salvaged_with_a_skip_report(tmp_path):
    rows = synthetic.records(40)
    rows[4] = '{"instruction": "Add the two numbers.", "input": "1 + 2", "outp'  # cut mid-line
    rows[11] = {"instruction": "Reverse the word.", "input": "cat"}  # no output
    rows[25] = "[1, 2, 3]"  # valid JSON, not a record
    path = _jsonl(tmp_path / "damaged.jsonl", rows + ["", "  "])  # blank lines are not records
    loaded = loaders.load(path, "alpaca")
    assert len(loaded.conversations) == 37
    report = loaded.report
    assert (report.total, report.used) == (40, 37)
    assert [skip.where for skip in report.skipped] == ["line 5", "line 12", "line 26"]
    assert "invalid JSON" in report.skipped[0].reason
    assert "'output'" in report.skipped[1].reason
    assert "expected an object" in report.skipped[2].reason
    assert report.summary().startswith(f"{path}: 37 of 40 records used, 3 skipped (line 5: invalid JSON")


def test_too_many_bad_records_is_an_error_unless_allowed(tmp_path):
    rows = synthetic.records(10) + ["{broken"] * 2
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as error:
        loaders.load(path, "alpaca")
    message = _one_line(error)
    assert str(path) in message and "16.7% bad is over the allowed 10%" in message
    assert "line 11: invalid JSON" in message and "raise max_bad_share" in message
    assert len(loaders.load(path, "alpaca", max_bad_share=0.2).conversations) == 10


def test_wrong_format_for_the_file_is_an_error(tmp_path):
    path = _jsonl(tmp_path / "alpaca.jsonl", synthetic.records(5))
    with pytest.raises(DataError, match="no usable sharegpt record"):
        loaders.load(path, "sharegpt")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.json", b"", "file is empty"),
        ("blank.jsonl", b"\n  \n", "file is empty"),
        ("binary.json", bytes(range(256)) * 4, "binary data"),
        ("latin1.jsonl", '{"instruction": "caf\xe9"}'.encode("latin-1"), "not UTF-8"),
        ("broken.parquet", b"PAR1" + b"\x01" * 64, "not a readable Parquet file"),
        ("scalar.json", b"42", "no usable alpaca record"),
    ],
)
def test_unusable_files_are_refused_in_one_line(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        loaders.load(path, "alpaca")
    message = _one_line(error)
    assert message.startswith(str(path)) and expected in message


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        loaders.load(tmp_path / "nope.json", "alpaca")
    with pytest.raises(DataError, match="unknown data format 'dolly'; use one of alpaca, rewild, sharegpt"):
        loaders.load(tmp_path / "nope.json", "dolly")


# -- the real public files -------------------------------------------------------------------


def test_real_alpaca_file_loads(shared_data):
    loaded = loaders.load(shared_data / "alpaca_5000.json", "alpaca")
    # Two records of the public file have an empty output; they are reported, not hidden.
    assert loaded.report.total == 5000
    assert len(loaded.conversations) == 5000 - len(loaded.report.skipped) >= 4990


@pytest.mark.parametrize("format", ["sharegpt", "rewild"])
def test_real_sharegpt_file_loads(shared_data, format):
    loaded = loaders.load(shared_data / "sharegpt_dummy_conversation.json", format)
    assert len(loaded.conversations) == 500 and not loaded.report.skipped
    assert all(c.turns[-1].role == "assistant" for c in loaded.conversations)


# -- template, tokenisation, split -------------------------------------------------------------


def test_template_renders_the_documented_layout():
    conversation = formats.alpaca({"instruction": "Add the two numbers.", "input": "37 + 58", "output": "95"})
    assert template.render(conversation, "<eos>") == (
        "### User:\nAdd the two numbers.\n\n37 + 58\n\n### Assistant:\n95<eos>"
    )
    assert template.prompt(conversation) == "### User:\nAdd the two numbers.\n\n37 + 58\n\n### Assistant:\n"


@pytest.fixture
def gpt2_tokenizer(load_tiny):
    return load_tiny("tiny-gpt2").tokenizer


def test_causal_labels_cover_only_the_responses(gpt2_tokenizer):
    tok = gpt2_tokenizer
    conversation = formats.sharegpt(SHAREGPT)
    row = tokenization.tokenize([conversation], tok, seq2seq=False).dataset[0]
    assert tok.decode(row["input_ids"]) == template.render(conversation, tok.eos_token)
    learned = [t for t, label in zip(row["input_ids"], row["labels"]) if label != tokenization.IGNORE]
    assert tok.decode(learned) == f"Hello!{tok.eos_token}5{tok.eos_token}"
    everything = tokenization.tokenize([conversation], tok, seq2seq=False, response_only=False).dataset[0]
    assert everything["labels"] == everything["input_ids"] == row["input_ids"]


def test_seq2seq_examples_split_prompt_and_response(gpt2_tokenizer):
    tok = gpt2_tokenizer
    conversation = formats.sharegpt(SHAREGPT)
    row = tokenization.tokenize([conversation], tok, seq2seq=True).dataset[0]
    assert tok.decode(row["input_ids"]) == template.prompt(conversation)  # no end-of-sequence inside a prompt
    assert tok.decode(row["labels"]) == "5" + tok.eos_token


def test_examples_with_the_response_cut_off_are_dropped(gpt2_tokenizer):
    conversations = [formats.alpaca(r) for r in synthetic.records(5)]
    result = tokenization.tokenize(conversations, gpt2_tokenizer, seq2seq=False, max_length=4)
    assert result.dropped == 5 and len(result.dataset) == 0
    kept = tokenization.tokenize(conversations, gpt2_tokenizer, seq2seq=False, max_length=64)
    assert kept.dropped == 0 and len(kept.dataset) == 5
    assert all(len(ids) <= 64 for ids in kept.dataset["input_ids"])


def test_split_is_deterministic_disjoint_and_complete():
    items = list(range(100))
    train, validation = split.train_validation(items, 0.1, seed=7)
    assert (train, validation) == split.train_validation(items, 0.1, seed=7)
    assert len(validation) == 10 and sorted(train + validation) == items
    assert validation != split.train_validation(items, 0.1, seed=8)[1]
    assert len(split.train_validation(items[:3], 0.05, seed=0)[1]) == 1
    with pytest.raises(ValueError, match="validation_share"):
        split.train_validation(items, 1.0, seed=0)


def test_synthetic_records_are_deterministic_and_correct(tmp_path):
    records = synthetic.records(200, seed=5)
    assert records == synthetic.records(200, seed=5) != synthetic.records(200, seed=6)
    for record in records:
        if record["instruction"] == "Add the two numbers.":
            a, b = record["input"].split(" + ")
            assert int(record["output"]) == int(a) + int(b)
        if record["instruction"] == "Reverse the letters of the word.":
            assert record["output"] == record["input"][::-1]
    path = synthetic.write_jsonl(tmp_path / "demo.jsonl", 50, seed=5)
    assert len(loaders.load(path, "alpaca").conversations) == 50
