"""lm-eval on a model object: the shipped held-out perplexity task."""

from __future__ import annotations

import math

import pytest

from harness.data import formats, synthetic
from harness.evaluation import lm_eval_tasks
from harness.evaluation.errors import EvaluationError

pytestmark = pytest.mark.unit


def test_local_task_is_found_without_the_default_index():
    assert lm_eval_tasks.local_tasks() == [lm_eval_tasks.HELDOUT]


def test_heldout_perplexity_is_finite(tiny):
    model, tokenizer = tiny()
    model.train()
    held_out = [formats.alpaca(r) for r in synthetic.records(6, seed=5)]
    figures = lm_eval_tasks.run(model, tokenizer, [lm_eval_tasks.HELDOUT], heldout=held_out, batch_size=4)
    assert set(figures) == {"heldout.word_perplexity", "heldout.byte_perplexity", "heldout.bits_per_byte"}
    assert all(math.isfinite(v) and v > 0 for v in figures.values())
    assert model.training  # left as it was


def test_heldout_task_needs_the_split(tiny):
    model, tokenizer = tiny()
    with pytest.raises(EvaluationError, match="needs the held-out split"):
        lm_eval_tasks.run(model, tokenizer, [lm_eval_tasks.HELDOUT])


def test_flatten_names_figures_by_alias():
    results = {"t": {"alias": "heldout", "word_perplexity,none": 3.0, "word_perplexity_stderr,none": "N/A",
                     "acc,strict": 0.5, "sample_len": 4}}
    assert lm_eval_tasks.flatten(results) == {"heldout.word_perplexity": 3.0, "heldout.acc.strict": 0.5}


def test_evaluation_prints_nothing_on_the_workers_terminal(tiny, tmp_path, monkeypatch, capfd):
    """No progress bar of lm-eval's and no "fatal: not a git repository" from its commit lookup
    (outside a checkout, as a user's run directory is): either would tear `gridlab work`'s display."""
    monkeypatch.chdir(tmp_path)
    model, tokenizer = tiny()
    held_out = [formats.alpaca(r) for r in synthetic.records(6, seed=5)]
    capfd.readouterr()
    figures = lm_eval_tasks.run(model, tokenizer, [lm_eval_tasks.HELDOUT], heldout=held_out, batch_size=4)
    out, err = capfd.readouterr()
    assert figures
    assert "fatal" not in err and "git" not in err, err
    assert "Running loglikelihood" not in err + out and "it/s" not in err + out, err


def test_evaluation_starts_no_program(tiny, monkeypatch):
    """lm-eval's environment report (torch's collect_env: ``pip list``, ``gcc --version``,
    ``lscpu`` and more, 0.35 s a call) and its ``git describe`` are skipped: the worker records
    the environment once, as provenance. The task itself starts nothing."""
    import subprocess

    started = []
    real_popen = subprocess.Popen

    class Recording(real_popen):
        def __init__(self, args, *a, **kw):
            started.append(args)
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    model, tokenizer = tiny()
    held_out = [formats.alpaca(r) for r in synthetic.records(6, seed=5)]
    assert lm_eval_tasks.run(model, tokenizer, [lm_eval_tasks.HELDOUT], heldout=held_out, batch_size=4)
    assert started == []
