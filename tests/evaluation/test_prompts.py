"""MT-Bench-format prompt files: the shipped demo, the real MT-Bench file, and bad files."""

from __future__ import annotations

import pytest

from db.errors import GridlabError
from harness.evaluation import prompts
from harness.evaluation.errors import PromptFileError

pytestmark = pytest.mark.unit


def test_demo_ships_ten_two_turn_questions():
    demo = prompts.load("demo")
    assert len(demo.questions) == 10
    assert all(len(q.turns) == 2 and q.category for q in demo.questions)
    assert demo.name.startswith("demo@") and demo.n_answers == 20


def test_real_mt_bench_file(mt_bench):
    bench = prompts.load(mt_bench)
    assert len(bench.questions) == 80
    assert bench.questions[0].question_id == "81" and bench.questions[0].category == "writing"
    assert all(len(q.turns) == 2 for q in bench.questions)
    assert prompts.load(mt_bench, limit=5).name == bench.name + "[:5]"


def test_name_follows_content(tmp_path):
    a, b = tmp_path / "a" / "p.jsonl", tmp_path / "b" / "p.jsonl"
    for path, text in ((a, "one"), (b, "two")):
        path.parent.mkdir()
        path.write_text('{"question_id": 1, "category": "x", "turns": ["%s"]}\n' % text)
    assert prompts.load(a).name != prompts.load(b).name


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"question_id": 1, "turns": ["a"]}\nnot json\n', "line 2: not JSON"),
        ('{"question_id": 1, "category": "x"}\n', "line 1: turns must be a list of 1 or 2"),
        ('{"question_id": 1, "turns": ["a", "b", "c"]}\n', "turns must be a list of 1 or 2"),
        ('{"turns": ["a"]}\n', "question_id must be"),
        ('{"question_id": 1, "turns": [""]}\n', "every turn must be a non-empty string"),
        ('{"question_id": 1, "turns": ["a"]}\n{"question_id": 1, "turns": ["b"]}\n', "appears twice"),
        ("\n\n", "holds no questions"),
        ("[1, 2]\n", "expected a JSON object"),
    ],
)
def test_malformed_file_is_one_clear_line(tmp_path, content, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PromptFileError) as info:
        prompts.load(path)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, GridlabError)


def test_missing_file(tmp_path):
    with pytest.raises(PromptFileError, match=r"prompt file .*nope.jsonl not found; give an MT-Bench-format"):
        prompts.load(tmp_path / "nope.jsonl")
