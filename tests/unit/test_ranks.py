"""How an attempt run as N ranks ends (jobs.ranks.ending), from the ranks' end records and
torchrun's failure summary, and which jobs run as N ranks (harness.experiments.ranks_for)."""

from __future__ import annotations

import pytest

from harness import experiments
from harness.grid import parse
from jobs import ranks, retry, states
from jobs.errors import Diverged, Interrupted, LeaseLost

pytestmark = pytest.mark.unit

SUMMARY = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
jobs.rank FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-01_09:24:41
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 32743)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 32743
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-01_09:24:41
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 32742)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def _folder(tmp_path, ends: dict[int, dict], log: str = ""):
    for rank, body in ends.items():
        ranks.write_json(ranks.end_record(tmp_path, rank), {"rank": rank, "t": float(rank), **body})
    (tmp_path / ranks.LOG).write_text(log)
    return tmp_path


def _failed(outcome=states.OUTCOME_ERROR, t=0.0, line="RuntimeError: boom"):
    return {"outcome": ranks.FAILED, "failure": outcome, "error_type": "builtins.RuntimeError", "error": line,
            "line": line, "t": t}


def test_all_ranks_succeeded_is_success(tmp_path):
    folder = _folder(tmp_path, {0: {"outcome": ranks.SUCCEEDED}, 1: {"outcome": ranks.SUCCEEDED}})
    assert ranks.ending(folder, 2, returncode=0, stopping=None) is None
    # torchrun signalled (a requeue) after both ranks finished: the job is done all the same
    assert ranks.ending(folder, 2, returncode=1, stopping=("Slurm sent SIGTERM", "preempted")) is None
    assert isinstance(ranks.ending(folder, 3, returncode=1, stopping=None), ranks.RankFailed)  # rank 2 never ended


def test_rank_0s_deliberate_outcomes_are_the_jobs(tmp_path):
    other = {1: _failed(t=5.0)}
    stopped = ranks.ending(_folder(tmp_path, {0: {"outcome": ranks.INTERRUPTED, "reason": "rank 0 got SIGTERM",
                                                  "stop_outcome": "preempted"}, **other}), 2, returncode=1, stopping=None)
    assert isinstance(stopped, Interrupted) and (stopped.reason, stopped.outcome) == ("rank 0 got SIGTERM", "preempted")
    diverged = ranks.ending(_folder(tmp_path, {0: {"outcome": ranks.DIVERGED, "step": 7, "detail": "loss=nan"}}),
                            2, returncode=1, stopping=None)
    assert isinstance(diverged, Diverged) and diverged.step == 7
    assert isinstance(ranks.ending(_folder(tmp_path, {0: {"outcome": ranks.LOST, "error": "gone"}}), 2, returncode=1,
                                   stopping=None), LeaseLost)


def test_a_worker_that_asked_its_ranks_to_stop_hands_the_job_back_whatever_they_managed(tmp_path):
    folder = _folder(tmp_path, {1: _failed()})  # rank 0 killed by the signal before it could record anything
    stopped = ranks.ending(folder, 2, returncode=1, stopping=("Slurm sent SIGTERM (preempted)", "preempted"))
    assert isinstance(stopped, Interrupted) and stopped.outcome == "preempted"


def test_a_rank_that_left_no_end_record_is_the_cause_and_named_with_its_signal(tmp_path):
    folder = _folder(tmp_path, {0: _failed(line="RuntimeError: Connection reset by peer")}, SUMMARY)
    assert ranks.torchrun_failures(folder / ranks.LOG) == {
        1: "exit code -9 (pid: 32743) (SIGKILL); Signal 9 (SIGKILL) received by PID 32743",
        0: "exit code 1 (pid: 32742); To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html"}
    failure = ranks.ending(folder, 2, returncode=1, stopping=None)
    assert isinstance(failure, ranks.RankFailed)
    assert "rank 1 of 2 died without an end record" in str(failure) and "SIGKILL" in str(failure)
    assert "Connection reset by peer" in str(failure)
    assert retry.classify(failure) == retry.Failure(states.OUTCOME_ERROR, "jobs.ranks.RankDied")


def test_the_first_rank_to_fail_says_why_with_its_own_class(tmp_path):
    folder = _folder(tmp_path, {0: _failed(t=2.0, line="RuntimeError: peer gone"),
                                1: {**_failed(states.OUTCOME_DISK, t=1.0, line="OSError: no space"),
                                    "error_type": "builtins.OSError"}})
    failure = ranks.ending(folder, 2, returncode=1, stopping=None)
    assert "rank 1 failed: OSError: no space" in str(failure)
    assert retry.classify(failure) == retry.Failure(states.OUTCOME_DISK, "builtins.OSError")


def test_an_invalid_input_wins_over_a_dead_peer(tmp_path):
    folder = _folder(tmp_path, {1: {**_failed(states.OUTCOME_INVALID, t=3.0), "error_type": "harness.data.errors.DataError"}},
                     SUMMARY)
    failure = ranks.ending(folder, 2, returncode=1, stopping=None)
    assert retry.classify(failure).outcome == states.OUTCOME_INVALID
    assert retry.decide(attempts=1, max_attempts=3, backoff_s=0, outcome=states.OUTCOME_INVALID).retry is False


def test_torchrun_failing_before_any_rank_ran_keeps_its_output(tmp_path):
    folder = _folder(tmp_path, {}, "torch.distributed.DistNetworkError: failed to bind port\n")
    failure = ranks.ending(folder, 2, returncode=1, stopping=None)
    assert "ranks 0, 1 of 2 died" in str(failure)


def test_ranks_for_reads_the_experiments_own_count_and_defaults_to_one():
    sft, tiny = experiments.load("sft"), experiments.load("tiny_lm")
    (cell,) = parse("name: g\nexperiment: sft\nfixed: {ranks: 2}\naxes: {seed: [0]}\n").cells()
    assert experiments.ranks_for(sft, {**experiments.params.defaults(sft.PARAMS), **cell.spec}) == 2
    assert experiments.ranks_for(sft, experiments.params.defaults(sft.PARAMS)) == 1
    assert experiments.ranks_for(tiny, {}) == 1


def test_a_global_batch_that_does_not_split_between_the_ranks_is_refused_when_the_grid_is_read():
    from harness.grid import GridFileError

    with pytest.raises(GridFileError, match="must split evenly between 3 ranks"):
        parse("name: g\nexperiment: sft\nfixed: {ranks: 3, batch_size: 8}\naxes: {seed: [0]}\n")


def test_trainer_arguments_split_the_global_batch_and_refuse_fsdp_without_gpus():
    import torch

    from harness.training import distributed

    spec = {"batch_size": 8, "parallelism": "ddp"}
    assert distributed.trainer_arguments(spec, 1) == {"per_device_train_batch_size": 8, "per_device_eval_batch_size": 8}
    two = distributed.trainer_arguments(spec, 2)
    assert (two["per_device_train_batch_size"], two["per_device_eval_batch_size"]) == (4, 8)
    if torch.cuda.is_available():
        pytest.skip("this machine has GPUs: FSDP is not refused here")
    assert (two["use_cpu"], two["ddp_backend"]) == (True, "gloo")
    with pytest.raises(distributed.NoGPUsForFSDP, match="parallelism fsdp needs GPUs"):
        distributed.trainer_arguments({**spec, "parallelism": "fsdp"}, 2, block_classes=("GPTNeoXLayer",))
    assert retry.classify(distributed.NoGPUsForFSDP("x")).outcome == states.OUTCOME_ERROR


# --- a class's GPUs decide a cell's ranks ----------------------------------------------------

CLASSED = """
name: g
experiment: sft
fixed: {{batch_size: 8{fixed}}}
axes: {{model: [tiny-gpt2, tiny-pythia]}}
resources:
  gpus: 1
  when:
    - match: {{model: tiny-pythia}}
      gpus: {gpus}
"""


def _cells(text: str):
    from harness.enqueue import new_jobs

    return {j.factors["model"]: j for j in new_jobs(parse(text))}


def test_a_cell_with_ranks_left_out_runs_as_one_rank_per_gpu_of_its_class():
    sft, tiny = experiments.load("sft"), experiments.load("tiny_lm")
    jobs = _cells(CLASSED.format(fixed="", gpus=2))
    assert (jobs["tiny-pythia"].resource_class, jobs["tiny-gpt2"].resource_class) == ("gpus=2", "gpus=1")
    assert "ranks" not in jobs["tiny-pythia"].spec, "resources stay out of the spec (and its hash)"
    full = {**experiments.params.defaults(sft.PARAMS), **jobs["tiny-pythia"].spec}
    assert experiments.ranks_for(sft, full, "gpus=2") == 2
    assert experiments.ranks_for(sft, full, "gpus=1") == 1
    assert experiments.ranks_for(sft, full, "gpus=0,cpus=2") == 1
    assert experiments.ranks_for(sft, full, "default") == 1 and experiments.ranks_for(sft, full) == 1
    assert experiments.ranks_for(sft, {**full, "ranks": 2}, "default") == 2  # no GPUs stated: ranks decide
    assert experiments.ranks_for(tiny, {}, "gpus=4") == 1  # an experiment without ranks: one process
    # an explicit ranks equal to the class's GPUs is the same cell as one that leaves it out
    assert experiments.ranks_for(sft, {**full, "ranks": 2}, "gpus=2") == 2
    both = _cells(CLASSED.format(fixed=", ranks: 2", gpus=2).replace("  gpus: 1\n", "  gpus: 2\n"))
    assert {j.resource_class for j in both.values()} == {"gpus=2"}


@pytest.mark.parametrize("fixed, gpus, needle", [
    (", ranks: 1", 2, "fixed.ranks: 1 disagrees with its resource class (gpus=2), whose 2 GPU(s) run 2 rank(s)"),
    (", ranks: 2", 4, "fixed.ranks: 2 disagrees with its resource class (gpus=4)"),
    ("", 3, "must split evenly between 3 ranks"),  # batch_size 8 over the class's 3 GPUs
])
def test_an_explicit_ranks_that_disagrees_with_the_class_is_refused_at_enqueue_in_one_line(fixed, gpus, needle):
    from harness.grid import GridFileError

    with pytest.raises(GridFileError) as err:
        parse(CLASSED.format(fixed=fixed, gpus=gpus), "g.yaml")
    text = str(err.value)
    assert needle in text and "\n" not in text and text.startswith("g.yaml: ")
    assert "'model': 'tiny-" in text, "the cell is named"


def test_an_axis_of_ranks_against_the_class_names_the_cell():
    from harness.grid import GridFileError

    text = CLASSED.format(fixed="", gpus=2).replace("axes: {model: [tiny-gpt2, tiny-pythia]}",
                                                    "axes: {model: [tiny-gpt2, tiny-pythia], ranks: [1, 2]}")
    with pytest.raises(GridFileError) as err:
        parse(text, "g.yaml")
    message = str(err.value)
    assert "2 problems" in message, message  # tiny-gpt2 with ranks 2 on 1 GPU; tiny-pythia with ranks 1 on 2
    assert "'model': 'tiny-gpt2', 'ranks': 2}: ranks: 2 disagrees with its resource class (gpus=1)" in message
