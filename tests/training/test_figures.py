"""Token accuracy as TRL's mean_token_accuracy (a mean over micro-batches), validation loss as the
pooled token NLL over the evaluation set, and the attention log with its heatmap."""

from __future__ import annotations

import json

import pytest
import torch

from harness.training import attention_log, diagnostics
from harness.training.trainer import StepStats, token_figures

pytestmark = pytest.mark.unit


def test_token_accuracy_is_the_mean_over_micro_batches():
    stats = StepStats()
    # micro-batch 1: 1 of 1 right; micro-batch 2: 1 of 3 right. Pooled 2/4; TRL's mean (1 + 1/3) / 2.
    stats.add(torch.tensor(1.0), torch.tensor(1), torch.tensor(1), torch.tensor(5))
    stats.add(torch.tensor(1.0), torch.tensor(1), torch.tensor(3), torch.tensor(7))
    accuracy, tokens = stats.take_counts()
    assert accuracy == pytest.approx((1 + 1 / 3) / 2) and tokens == 12
    assert stats.take_counts() == (None, 0)


def test_validation_loss_pools_token_nll_over_batches():
    stats = StepStats()
    vocab = 4
    big = torch.zeros(1, 5, vocab)  # 4 predicted tokens, uniform: NLL log 4 each
    labels_big = torch.tensor([[0, 1, 2, 3, 0]])
    small = torch.full((1, 2, vocab), -1e9)
    small[0, 0, 1] = 0.0  # 1 predicted token, certain and right: NLL 0
    labels_small = torch.tensor([[0, 1]])
    for logits, labels in ((big, labels_big), (small, labels_small)):
        stats.add_eval(*token_figures(logits, labels, seq2seq=False))
    figures = stats.eval_figures()
    assert figures["tokens"] == 5
    assert figures["nll_pooled"] == pytest.approx(4 * torch.log(torch.tensor(4.0)).item() / 5)  # not the mean of means
    assert figures["mean_token_accuracy"] == pytest.approx((0.25 + 1.0) / 2)


def test_padding_labels_are_not_counted():
    logits = torch.zeros(1, 4, 3)
    nll, correct, predicted = token_figures(logits, torch.tensor([[0, 0, -100, -100]]), seq2seq=False)
    assert int(predicted) == 1 and int(correct) == 1


def _rows(step, layers=2, heads=3, value=0.5):
    return [diagnostics.LayerRow("", i, (1.0,) * heads, (value,) * heads, (0,) * heads, 2.0) for i in range(layers)]


def test_attention_log_is_one_row_per_layer_and_step_and_resumes_at_its_checkpoint(tmp_path):
    log = attention_log.AttentionLog(tmp_path / "a1")
    log.add(10, "train", _rows(10))
    log.add(20, "train", _rows(20, value=0.9))
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    log.copy_into(checkpoint)
    log.add(30, "train", _rows(30))  # after the checkpoint: a resumed attempt must not see it
    rows = attention_log.read(log.path)
    assert len(rows) == 6 and rows[0] == {"step": 10, "phase": "train", "stack": "", "layer": 0, "entropy": [1.0] * 3,
                                          "entropy_norm": [0.5] * 3, "nan": [0] * 3, "max_entropy": 2.0}
    resumed = attention_log.AttentionLog(tmp_path / "a2", resume_from=checkpoint, resume_step=20)
    assert resumed.rows == 4
    assert {r["step"] for r in attention_log.read(resumed.path)} == {10, 20}


def test_attention_log_sends_each_probe_to_its_store_as_well_as_to_its_file(tmp_path):
    sent = []
    log = attention_log.AttentionLog(tmp_path / "a1", store=lambda step, phase, rows: sent.append((step, phase, rows)))
    log.add(10, "train", _rows(10))
    log.add(10, "eval", [])  # nothing probed: nothing sent
    assert [(step, phase, [r["layer"] for r in rows]) for step, phase, rows in sent] == [(10, "train", [0, 1])]
    stored = {k: v for k, v in attention_log.read(log.path)[0].items() if k not in ("step", "phase")}
    assert json.loads(json.dumps(sent[0][2][0])) == stored


def test_heatmap_is_a_png_of_the_last_training_step(tmp_path):
    from PIL import Image

    log = attention_log.AttentionLog(tmp_path / "a1")
    log.add(10, "train", _rows(10, layers=4, heads=4))
    log.add(20, "train", _rows(20, layers=4, heads=4, value=0.8))
    log.add(20, "eval", _rows(20, layers=4, heads=4, value=0.1))
    target = log.publish(tmp_path)
    assert target == tmp_path / attention_log.FILE
    step, last = attention_log.latest(attention_log.read(target))
    assert step == 20 and attention_log.matrix(last) == [[0.8] * 4] * 4
    with Image.open(tmp_path / attention_log.HEATMAP) as image:
        assert image.format == "PNG" and image.width > 4 * 30 and image.height > 4 * 30
    json.dumps(last)  # plain data
