"""jobs.params.Param, the one mechanism experiments' settings and Slurm's are checked with."""

from __future__ import annotations

import pytest

from jobs.params import REQUIRED, Param

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("param, value, result", [
    (Param(int, minimum=1), 2.0, (2, None)),
    (Param(int, minimum=1), 0, (0, "must be at least 1, got 0")),
    (Param(int), True, (True, "expected int, got True")),
    (Param(float), "1e-3", (0.001, None)),  # YAML 1.1 reads 1e-3 as a string
    (Param(float), float("nan"), (..., "expected a finite number, got nan")),
    (Param(str, choices=("a", "b")), "c", ("c", "'c' is not one of: a, b")),
    (Param(bool), "yes", ("yes", "expected true or false, got 'yes'")),
    (Param(int, check=lambda v: "odd" if v % 2 else None), 3, (3, "odd")),
])
def test_kinds_and_rules(param, value, result):
    clean, problem = param.coerce(value)
    assert problem == result[1]
    if result[0] is not ...:  # nan equals nothing
        assert clean == result[0]


def test_expected_words_every_problem_the_same_way():
    p = Param(int, 1, minimum=1, expected="an integer >= 1")
    assert p.coerce("many") == ("many", "expected an integer >= 1, got 'many'")
    assert p.coerce(0) == (0, "expected an integer >= 1, got 0")
    assert p.coerce(3) == (3, None)


def test_parse_replaces_the_kind_rules_and_the_shared_rules_still_apply():
    def minutes(value):
        return (int(value.removesuffix("m")), None) if isinstance(value, str) and value.endswith("m") else (
            value, f"expected minutes like 5m, got {value!r}")

    p = Param(int, REQUIRED, parse=minutes, minimum=1)
    assert p.coerce("5m") == (5, None)
    assert p.coerce(5) == (5, "expected minutes like 5m, got 5")
    assert p.coerce("0m") == (0, "must be at least 1, got 0")
