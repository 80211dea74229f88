"""Resources per cell (jobs.resources): the grid's plan, each cell's class, its Slurm settings."""

from __future__ import annotations

import pytest

from harness import enqueue, grid
from jobs import operator, resources
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
    ("resources: {gpu: 1}", "resources.gpu: unknown key (valid keys: gpus, cpus, mem, time, partition, constraint, "
                            "cells_per_gpu, cell_mem)"),
    ("resources: {cells_per_gpu: 2, cell_mem: much}", "resources.cell_mem: expected an amount like 6G or 512M"),
    ("resources: {gpus: true}", "resources.gpus: expected a whole number from 0 to 64, got True"),
    ("resources: {cells_per_gpu: 0}", "resources.cells_per_gpu: expected a whole number from 1 to 64, got 0"),
    ("resources: {cells_per_gpu: 65}", "resources.cells_per_gpu: expected a whole number from 1 to 64, got 65"),
    ("resources: {time: 525601}", "resources.time: expected a whole number from 1 to 525600, got 525601"),
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


def test_cells_per_gpu_is_part_of_the_class_and_not_of_its_slurm_settings():
    text = GRID.split("resources:")[0] + "resources: {gpus: 1, cells_per_gpu: 4, mem: 16G}\n"
    (cls,) = {j.resource_class for j in enqueue.new_jobs(grid.parse(text))}
    assert cls == "gpus=1,mem=16G,cells_per_gpu=4"
    assert resources.from_name(cls).cells() == 4 and resources.from_name("gpus=1").cells() == 1
    assert resources.from_name(cls).sbatch() == {"gres": "gpu:1", "mem": "16G"}


def test_cells_per_gpu_on_a_class_with_several_gpus_is_refused_for_the_cells_that_get_it():
    text = GRID.split("resources:")[0] + ("resources:\n  cells_per_gpu: 4\n  when:\n"
                                           "    - match: {model: tiny-gpt2-deep}\n      gpus: 2\n")
    with pytest.raises(grid.GridFileError) as err:
        grid.parse(text, "scale.yaml")
    message = str(err.value)
    assert "2 problems" in message and "'model': 'tiny-gpt2-deep'" in message and "'model': 'tiny-gpt2'," not in message
    assert "resources: cells_per_gpu: 4 shares one GPU between cells, but gpus is 2" in message


def test_a_class_whose_workers_run_k_cells_is_staffed_with_a_worker_per_k_jobs(tmp_path):
    from dataclasses import replace

    from db import engine as db_engine
    from db import schema
    from jobs.queue import Queue
    from slurm import supervise
    from tests.support.grids import make_jobs

    assert [resources.workers_for(n, "cells_per_gpu=4") for n in (1, 4, 5, 9)] == [1, 1, 2, 3]
    assert resources.workers_for(5, "gpus=2") == 5 and resources.workers_for(5, None) == 5
    eng = db_engine.create(f"sqlite:///{tmp_path / 'q.db'}")
    schema.upgrade(eng)
    queue = Queue(eng)
    shared, alone = "gpus=1,cells_per_gpu=4", "gpus=2"
    jobs = make_jobs(10)
    operator.enqueue(queue.engine, "g", [replace(j, resource_class=shared if j.spec["i"] < 6 else alone) for j in jobs])
    assert supervise.missing_by_class(queue, supervise.Tick(), 8) == {shared: 2, alone: 4}
    submitted = []
    dispatcher = launch.Dispatcher(queue, None, settings.SlurmSettings())
    dispatcher.submit = lambda n, cls: submitted.append((cls, n))
    dispatcher.staff(8)
    assert sorted(submitted) == sorted([(alone, 4), (shared, 2)])
    eng.dispose()


def test_cell_mem_is_what_a_sharing_worker_holds_free_for_each_cell():
    assert resources.from_name("gpus=1,cells_per_gpu=4,cell_mem=6G").cell_mib() == 6 * 1024
    assert resources.from_name("cells_per_gpu=4,cell_mem=512M").cell_mib() == 512
    assert resources.from_name("cells_per_gpu=4").cell_mib() is None
    text = GRID.split("resources:")[0] + "resources: {gpus: 1, cell_mem: 6G}\n"
    with pytest.raises(grid.GridFileError, match="cell_mem: 6G is what one of several cells sharing a GPU needs"):
        grid.parse(text, "scale.yaml")
