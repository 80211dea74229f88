"""Resources per cell (jobs.resources): the grid's plan, each cell's class, its Slurm settings."""

from __future__ import annotations

import pytest

from harness import enqueue, grid
from jobs import resources
from slurm import launch, settings

pytestmark = pytest.mark.unit

GRID = """
name: scale
experiment: tiny_lm
fixed: {steps: 2}
axes:
  model: [tiny-gpt2, tiny-gpt2-deep]
  lr: [1.0e-3, 3.0e-3]
resources:
  gpus: 1
  cpus: 4
  mem: 16G
  time: 60
  when:
    - match: {model: tiny-gpt2-deep}
      gpus: 2
      mem: 64G
    - match: {model: tiny-gpt2-deep, lr: 3.0e-3}
      time: 240
"""


def test_each_cell_gets_the_class_its_values_ask_for():
    g = grid.parse(GRID, "scale.yaml")
    classes = {(j.factors["model"], j.factors["lr"]): j.resource_class for j in enqueue.new_jobs(g)}
    assert classes == {
        ("tiny-gpt2", 1e-3): "gpus=1,cpus=4,mem=16G,time=60",
        ("tiny-gpt2", 3e-3): "gpus=1,cpus=4,mem=16G,time=60",
        ("tiny-gpt2-deep", 1e-3): "gpus=2,cpus=4,mem=64G,time=60",
        ("tiny-gpt2-deep", 3e-3): "gpus=2,cpus=4,mem=64G,time=240",
    }
    assert resources.from_name("gpus=2,cpus=4,mem=64G,time=240") == resources.Resources(2, 4, "64G", 240)


def test_resources_do_not_change_a_cells_identity():
    plain = grid.parse(GRID.split("resources:")[0], "scale.yaml")
    assert [j.spec_hash for j in enqueue.new_jobs(plain)] == [j.spec_hash for j in enqueue.new_jobs(grid.parse(GRID))]
    assert {j.resource_class for j in enqueue.new_jobs(plain)} == {"default"}


def test_a_class_becomes_its_workers_slurm_settings():
    base = settings.SlurmSettings(partition="debug", time=30, cpus=1)
    st = launch.class_settings(base, "gpus=2,cpus=8,mem=64G,time=240")
    params = st.to_sbatch()
    assert (params["gres"], params["cpus_per_task"], params["mem"], params["time"], params["partition"]) == (
        "gpu:2", 8, "64G", 240, "debug")
    assert launch.class_settings(base, "default") == base


@pytest.mark.parametrize("bad, needle", [
    ("resources: {gpus: -1}", "resources.gpus: expected a whole number from 0 to 64, got -1"),
    ("resources: {gpu: 1}", "resources.gpu: unknown key (valid keys: gpus, cpus, mem, time, partition, constraint)"),
    ("resources: {mem: lots}", "resources.mem: expected an amount like 16G or 512M"),
    ("resources: {partition: 'a b'}", "resources.partition: expected a Slurm partition name"),
    ("resources: {when: [{match: {model: gpt-9}, gpus: 2}]}", "resources.when[0].match.model: 'gpt-9' is not a value"),
    ("resources: {when: [{gpus: 2}]}", "resources.when[0]: expected a mapping with match:"),
    ("resources: [1, 2]", "resources: expected a mapping, got list"),
])
def test_bad_resources_are_reported_with_their_place(bad, needle):
    text = GRID.split("resources:")[0] + bad + "\n"
    with pytest.raises(grid.GridFileError) as err:
        grid.parse(text, "scale.yaml")
    assert needle in str(err.value)
