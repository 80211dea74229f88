"""Slurm settings: validation of the grid file's slurm: block and of flags."""

from __future__ import annotations

import pytest

from harness.grid import GridFileError, parse
from slurm import settings

pytestmark = pytest.mark.unit


def test_a_full_block_maps_to_sbatch_parameters():
    s = settings.from_grid({"partition": "gpu", "gres": "gpu:a100:1", "time": "1-02:00:00", "mem": "16gb", "cpus": 4,
                            "account": "lab", "qos": "high", "constraint": "a100", "array_parallelism": 3,
                            "signal_delay_s": 120, "setup": "module load cuda", "extra": {"--reservation": "r"}})
    assert s.to_sbatch() == {
        "time": 26 * 60, "cpus_per_task": 4, "job_name": "gridlab-worker", "signal_delay_s": 120, "partition": "gpu",
        "gres": "gpu:a100:1", "account": "lab", "qos": "high", "constraint": "a100", "mem": "16G",
        "array_parallelism": 3, "setup": ["module load cuda"], "additional_parameters": {"reservation": "r"},
    }


def test_flags_override_the_file_and_extra_flags_merge():
    s = settings.from_grid({"partition": "gpu", "time": 30, "extra": {"reservation": "r"}},
                           {"partition": "debug", "time": None, "extra": {"mail-type": "END"}})
    assert (s.partition, s.time, s.extra) == ("debug", 30, {"reservation": "r", "mail-type": "END"})


@pytest.mark.parametrize("value, minutes", [(5, 5), ("5", 5), ("1:30", 2), ("2:00:00", 120), ("1-0", 1440), ("1-2:30", 1590)])
def test_time_forms(value, minutes):
    assert settings.parse_time(value) == (minutes, None)


def test_every_problem_at_once_and_unknown_keys_list_the_valid_ones():
    with pytest.raises(settings.SlurmSettingsError) as err:
        settings.from_grid({"partiton": "x", "gres": "gpu a100", "time": 0, "cpus": "many", "extra": {"array": "1-4"}})
    text = str(err.value)
    assert len(err.value.problems) == 5
    assert "partiton: unknown key (valid keys: partition, gres, time" in text
    assert "'array' is set by gridlab; use --workers and array_parallelism" in text
    assert "\n" not in text and text.endswith("fix them and run the command again")


def test_a_bad_slurm_block_is_reported_with_the_other_grid_problems():
    with pytest.raises(GridFileError) as err:
        parse("name: g\naxes: {lr: [0.1]}\nretry: {tries: 2}\nslurm: {partition: gpu, gpus: 2, mem: lots}\n")
    problems = err.value.problems
    assert any(p.startswith("retry.tries: unknown key") for p in problems)
    assert any(p.startswith("slurm.gpus: unknown key (valid keys: partition,") for p in problems)
    assert any(p.startswith("slurm.mem: expected a size") for p in problems)


def test_a_good_block_is_kept_on_the_grid():
    g = parse("name: g\naxes: {lr: [0.1]}\nslurm: {partition: gpu, time: '0:30:00'}\n")
    assert g.slurm == {"partition": "gpu", "time": 30}
    assert settings.from_grid(g.slurm).time == 30


def test_slurm_must_be_a_mapping():
    with pytest.raises(GridFileError, match="slurm: expected a mapping"):
        parse("name: g\naxes: {lr: [0.1]}\nslurm: [gpu]\n")
