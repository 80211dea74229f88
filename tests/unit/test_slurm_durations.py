"""Slurm's durations, read by the one parser (slurm.durations) that the settings and the
worker's time left share: sbatch --time forms and what squeue/scontrol print."""

from __future__ import annotations

import pytest

from slurm import durations, settings
from slurm.worker import _time_left_s

pytestmark = pytest.mark.unit

DAY, HOUR, MINUTE = 86400, 3600, 60


@pytest.mark.parametrize("text, seconds", [
    # sbatch --time forms
    ("5", 5 * MINUTE),  # minutes
    ("1:30", MINUTE + 30),  # minutes:seconds
    ("2:03:04", 2 * HOUR + 3 * MINUTE + 4),  # hours:minutes:seconds
    ("1-02", DAY + 2 * HOUR),  # days-hours: one day and two HOURS (the worker once read two seconds)
    ("1-02:03", DAY + 2 * HOUR + 3 * MINUTE),  # days-hours:minutes
    ("1-02:03:04", DAY + 2 * HOUR + 3 * MINUTE + 4),  # days-hours:minutes:seconds
    ("0-00:00:00", 0),
    # what squeue's %L and scontrol's RunTime/TimeLimit print
    ("3:04", 3 * MINUTE + 4),
    ("00:00:09", 9),
    (" 10:00 ", 10 * MINUTE),
    ("UNLIMITED", None), ("NOT_SET", None), ("INVALID", None), ("Partition_Limit", None),
])
def test_durations(text, seconds):
    assert durations.seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1-", "-5", "1:2:3:4", "1-2-3", "1.5", "2h"])
def test_what_is_not_a_duration(text):
    with pytest.raises(ValueError, match="not a Slurm duration"):
        durations.seconds(text)
    assert durations.seconds_or_none(text) is None


@pytest.mark.parametrize("value, minutes", [
    (5, 5), ("5", 5), ("1:30", 2), ("2:00:00", 120), ("1-0", 1440), ("1-02", 1560), ("1-2:30", 1590), ("0:30:01", 31),
])
def test_settings_round_up_to_minutes(value, minutes):
    assert settings.parse_time(value) == (minutes, None)


@pytest.mark.parametrize("value, problem", [
    (0, "must be at least 1 minute, got 0"), ("0:00", "must be at least 1 minute, got '0:00'"),
    ("UNLIMITED", "expected minutes or [D-]HH:MM:SS, got 'UNLIMITED'"), (True, "expected minutes or [D-]HH:MM:SS, got True"),
    ("soon", "expected minutes or [D-]HH:MM:SS, got 'soon'"), (1.5, "expected minutes or [D-]HH:MM:SS, got 1.5"),
])
def test_settings_refuse(value, problem):
    assert settings.parse_time(value) == (None, problem)


@pytest.mark.parametrize("fields, left", [
    ({"RunTime": "00:10:00", "TimeLimit": "01:00:00"}, 50 * MINUTE),
    ({"RunTime": "1-00:00:00", "TimeLimit": "1-02"}, 2 * HOUR),  # was read as 2 s, and the job "near its limit"
    ({"RunTime": "2:00", "TimeLimit": "5"}, 3 * MINUTE),
    ({"RunTime": "02:00:00", "TimeLimit": "01:00:00"}, 0.0),
    ({"RunTime": "00:00:05", "TimeLimit": "UNLIMITED"}, 3600.0),  # no figure: an hour, as before
    ({"RunTime": "garbage", "TimeLimit": "01:00:00"}, 3600.0),
    ({}, 3600.0),
])
def test_the_worker_reads_time_left_with_the_same_parser(fields, left):
    assert _time_left_s(fields) == left
