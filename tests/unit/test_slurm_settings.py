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


@pytest.mark.parametrize("key, value, problem", [
    ("partition", "  ", "expected a non-empty string, got '  '"),
    ("qos", True, "expected a non-empty string, got True"),
    ("gres", "gpu a100", "expected NAME[:TYPE]:COUNT like gpu:a100:1, got 'gpu a100'"),
    ("time", "soon", "expected minutes or [D-]HH:MM:SS, got 'soon'"),
    ("time", 0, "must be at least 1 minute, got 0"),
    ("mem", "lots", "expected a size like 4G, 500M or 16000 (MB), got 'lots'"),
    ("cpus", "many", "expected an integer >= 1, got 'many'"),
    ("cpus", 0, "expected an integer >= 1, got 0"),
    ("cpus", True, "expected an integer >= 1, got True"),
    ("max_requeues", -1, "expected an integer >= 0, got -1"),
    ("signal_delay_s", 2.5, "expected an integer >= 0, got 2.5"),
    ("array_parallelism", 10**30, "expected an integer >= 1, got " + str(10**30)),
    ("setup", ["a", 1], "expected a list of shell lines, e.g. ['module load cuda']"),
    ("extra", "x", "expected a mapping of sbatch flags to values, e.g. {reservation: my-res}"),
    ("extra", {"a b": 1}, "'a b' is not an sbatch flag name"),
    ("extra", {"x": [1]}, "x: expected a plain value, got list"),
])
def test_each_setting_says_what_it_expected(key, value, problem):
    assert settings.validate({key: value}) == ({}, [f"{key}: {problem}"])


def test_settings_are_params_like_an_experiments():
    """One mechanism: every Slurm setting is a jobs.params.Param, whose default is the
    dataclass's, so an integer written 2.0 passes here as it does in an experiment's settings."""
    from jobs.params import Param

    assert all(isinstance(p, Param) for p in settings.PARAMS.values())
    assert settings.SlurmSettings.keys() == tuple(settings.PARAMS)
    defaults = settings.SlurmSettings()
    assert all(getattr(defaults, k) == p.default for k, p in settings.PARAMS.items())
    assert settings.validate({"cpus": 2.0, "mem": "16gb", "setup": "module load x"}) == (
        {"cpus": 2, "mem": "16G", "setup": ("module load x",)}, [])


@pytest.mark.parametrize("block, fix", [
    ({"time": 1}, "give a time of at least 3 min"),  # the default signal_delay_s, 90
    ({"time": 2}, "give a time of at least 3 min or a signal_delay_s under 60"),
    ({"time": 2, "signal_delay_s": 60}, "give a time of at least 3 min or a signal_delay_s under 60"),
])
def test_a_time_limit_the_checkpoint_signal_cannot_fit_in_is_refused(block, fix):
    """Slurm may send USR2 up to 60 s before it is due: with time 1 and any delay it came in a
    worker's first second here and killed it."""
    with pytest.raises(settings.SlurmSettingsError) as err:
        settings.from_grid(block)
    assert "Slurm may send USR2 up to 60 s before it is due" in str(err.value) and fix in str(err.value)
    assert settings.from_grid({"time": 2, "signal_delay_s": 59}).timing_problem() is None


def test_a_resource_class_whose_time_leaves_no_room_for_the_signal_is_refused_before_anything_is_submitted():
    from jobs import resources
    from slurm import launch

    cls = resources.Resources(time=1).name()
    with pytest.raises(settings.SlurmSettingsError, match=r"resource class .*time=1.*at least 3 min"):
        launch.class_settings(settings.from_grid({"time": 60}), cls)
    assert launch.class_settings(settings.from_grid({"time": 60}), resources.Resources(time=5).name()).time == 5


def test_a_launch_refused_for_a_class_time_writes_nothing(tmp_path):
    """`gridlab launch` checks every pending class's time before it pins the code or submits:
    a class with ``time: 1`` is one line, exit 2, and the runs folder stays empty."""
    from dataclasses import replace

    from db import engine as db_engine, schema
    from jobs import operator, resources
    from tests.support import cli
    from tests.support.grids import make_jobs

    url = f"sqlite:///{tmp_path / 'gridlab.db'}"
    eng = db_engine.create(url)
    schema.upgrade(eng)
    operator.enqueue(eng, "g", [replace(j, resource_class=resources.Resources(time=1).name()) for j in make_jobs(1)])
    eng.dispose()
    r = cli.invoke(["launch", "--db", url, "--runs-dir", str(tmp_path / "runs"), "--skip-check"], cwd=tmp_path)
    cli.assert_one_line_error(r, "resource class", "at least 3 min")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
