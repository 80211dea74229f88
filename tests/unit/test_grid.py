"""Grid files: expansion, validation (every problem at once), spec hashing."""

from __future__ import annotations

import pytest

from harness import grid as grid_mod
from harness.grid import GridFileError

pytestmark = pytest.mark.unit

BASE = """
name: t
experiment: tiny_lm
fixed: {steps: 5}
"""


def parse(text: str, **kw):
    return grid_mod.parse(BASE + text, "t.yaml", **kw)


def test_axes_cross_zip_exclude_include():
    g = parse("""
axes:
  activation: [gelu, relu]
  lr: [1e-3, 3.0e-3]
zip:
  - {model: [tiny-gpt2, tiny-gpt2-deep], batch_size: [8, 4]}
exclude:
  - {activation: relu, lr: 3.0e-3}
include:
  - {activation: relu, lr: 0.01}
""")
    cells = list(g.cells())
    assert g.product_size() == 8
    assert len(cells) == 8 - 2 + 1
    assert {(c.factors["model"], c.factors["batch_size"]) for c in cells[:-1]} == {("tiny-gpt2", 8), ("tiny-gpt2-deep", 4)}
    assert not any(c.factors["activation"] == "relu" and c.factors["lr"] == 3e-3 for c in cells)
    assert cells[-1].factors == {"activation": "relu", "lr": 0.01}
    # 1e-3 (a string in YAML 1.1) became a float; defaults and fixed are in the spec
    assert cells[0].spec["lr"] == 0.001 and cells[0].spec["steps"] == 5 and cells[0].spec["seed"] == 0
    assert len({c.spec_hash for c in cells}) == len(cells)


def test_cells_carry_the_canonical_json_of_their_spec():
    g = parse("""
fixed: {steps: 7}
axes:
  activation: [gelu, relu]
  lr: [1, 2.5e-3, 1.0e-3]
  seed: [0, 10]
include:
  - {activation: relu, lr: 0.5, batch_size: 3}
""")
    for cell in g.cells():
        assert cell.spec_json == grid_mod.canonical_json(cell.spec)
        assert cell.spec_hash == grid_mod.spec_hash(cell.spec)
    assert any(c.spec["lr"] == 1.0 and isinstance(c.spec["lr"], float) for c in g.cells())


def test_spec_hash_is_stable_and_order_free():
    assert grid_mod.spec_hash({"a": 1, "b": [1, 2]}) == grid_mod.spec_hash({"b": [1, 2], "a": 1})
    assert grid_mod.spec_hash({"a": 1}) != grid_mod.spec_hash({"a": 1.5})


def test_every_problem_is_reported_at_once_with_its_place():
    with pytest.raises(GridFileError) as err:
        parse("""
axes:
  activation: [gelu, swish]
  colour: [red]
  lr: []
retry: {max_attempts: 0, tries: 3}
bogus: 1
""")
    problems = err.value.problems
    text = str(err.value)
    assert "unknown key 'bogus' (valid keys: name, description, experiment" in text
    assert any(p.startswith("axes.activation[1]: 'swish' is not one of: gelu, relu") for p in problems)
    assert any(p.startswith("axes.colour: unknown setting 'colour'") and "valid: model, activation" in p for p in problems)
    assert any(p.startswith("axes.lr: an axis needs at least one value") for p in problems)
    assert any(p.startswith("retry.max_attempts") for p in problems)
    assert any(p.startswith("retry.tries: unknown key") for p in problems)
    assert "\n" not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("axes: {model: [gpt5]}", "axes.model[0]: 'gpt5' is not one of: tiny-gpt2"),
        ("axes: {lr: [fast]}", "axes.lr[0]: expected a number, got 'fast'"),
        ("axes: {steps: [3]}", "'steps' is both fixed and an axis"),
        ("axes: {lr: [0.1, 0.1]}", "axes.lr: repeats a value"),
        ("zip: [{lr: [0.1, 0.2], seed: [1]}]", "zip[0]: lists must have equal lengths"),
        ("axes: {seed: [0]}\nexclude: [{norm: dyt}]", "exclude[0].norm: not an axis of this grid"),
        ("axes: {seed: [0]}\nexclude: [{seed: 5}]", "exclude[0].seed: 5 is not a value of axis seed"),
        ("experiment: nope\naxes: {seed: [0]}", "experiment: unknown experiment 'nope'"),
        ("axes: {seed: [0, 1]}\npriority: high", "priority: expected an integer"),
        ("", "the grid has no axes and no extra cells"),
    ],
)
def test_bad_grid_files_name_the_problem(text, expected):
    with pytest.raises(GridFileError, match=None) as err:
        parse(text)
    assert expected in str(err.value)


def test_yaml_syntax_error_gives_line_and_column():
    with pytest.raises(GridFileError) as err:
        grid_mod.parse("name: x\naxes:\n  lr: [1, 2\n", "bad.yaml")
    assert str(err.value).startswith("bad.yaml: line ") and "YAML syntax error" in str(err.value)


def test_top_level_must_be_a_mapping():
    with pytest.raises(GridFileError, match="expected a mapping"):
        grid_mod.parse("- a\n- b\n", "list.yaml")


def test_huge_grid_needs_yes():
    values = ", ".join(str(i) for i in range(1, 41))
    axes = "\n".join(f"  {k}: [{values}]" for k in ("seed", "steps", "batch_size", "eval_batches"))
    text = f"name: big\nexperiment: tiny_lm\naxes:\n{axes}\n"  # 40**4 = 2.56M cells
    with pytest.raises(GridFileError, match="pass --yes"):
        grid_mod.parse(text, "big.yaml")
    assert grid_mod.parse(text, "big.yaml", allow_large=True).product_size() == 40**4


def test_exclusions_that_remove_everything_are_an_error():
    from harness.enqueue import new_jobs

    g = parse("axes: {seed: [0, 1]}\nexclude: [{seed: [0, 1]}]")
    with pytest.raises(GridFileError, match="remove every cell"):
        new_jobs(g)
