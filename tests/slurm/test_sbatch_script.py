"""The sbatch script `gridlab launch --dry-run` prints (and submits) is checked against a
golden file, paths normalised. Regenerate after an intended change with
GRIDLAB_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slurm.conftest import REPO
from tests.support import cli

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"

GRID = """
name: golden
experiment: tiny_lm
axes: {lr: [0.001]}
slurm:
  partition: gpu
  gres: gpu:a100:1
  time: "2:00:00"
  mem: 32G
  cpus: 8
  account: my-lab
  qos: normal
  constraint: a100
  array_parallelism: 2
  signal_delay_s: 120
  setup: ["module load cuda/12.1"]
  extra: {reservation: my-res}
"""


def normalise(text: str, tmp_path: Path) -> str:
    out = text.replace(sys.executable, "<PYTHON>").replace(str(tmp_path.resolve()), "<TMP>")
    out = out.replace(str(REPO), "<CODE>")
    # the launch folder carries a time stamp and a random id, the pinned snapshot the code's fingerprint
    out = re.sub(r"<TMP>/runs/code/[0-9a-f]{16}", "<TMP>/runs/code/<SNAPSHOT>", out)
    return re.sub(r"<TMP>/runs/slurm/[^/\s]+", "<TMP>/runs/slurm/<LAUNCH>", out)


def dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return cli.run(["launch", *args, "--dry-run", "--db", f"sqlite:///{tmp_path / 'gridlab.db'}",
                    "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path, env={"PYTHONPATH": str(REPO)}, timeout=60)


@pytest.mark.parametrize("name, args", [
    ("grid_file_array", ["--workers", "4", "--env", "HF_HOME=/scratch/hf"]),
    ("flags_single", ["--workers", "1", "--partition", "debug", "--time", "30", "--sbatch", "mail-type=END"]),
])
def test_dry_run_script_matches_golden(tmp_path, name, args):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    r = dry_run(tmp_path, *([str(grid)] if name == "grid_file_array" else []), *args)
    assert r.returncode == 0, r.stderr
    got = normalise(r.stdout, tmp_path)
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("GRIDLAB_UPDATE_GOLDEN") == "1":
        golden.write_text(got)
    assert got == golden.read_text()
    assert not (tmp_path / "gridlab.db").exists()  # a dry run writes nothing


def test_dry_run_reports_bad_settings_in_one_line(tmp_path):
    r = dry_run(tmp_path, "--sbatch", "array=0-9", "--time", "soon")
    line = cli.assert_one_line_error(r, "flag time: expected minutes", "'array' is set by gridlab")
    assert line.startswith("gridlab: error: slurm settings: ") and r.stderr.count("\n") == 1
