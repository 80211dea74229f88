"""transformers' Trainer, plus the per-step and evaluation figures it does not count itself.

Training: `Trainer.compute_loss` is extended to accumulate, per optimizer step, the loss of every
micro-batch, each micro-batch's token accuracy (correct label tokens over label tokens) and the
number of input tokens. Token accuracy is reported as TRL's ``mean_token_accuracy`` is: the mean
of the micro-batches' accuracies over the logging window (not the pooled share). The figures stay
on the device as tensors until :class:`harness.training.callbacks.GridlabCallback` reads them, so
counting adds no host synchronisation.

Evaluation: every evaluation batch adds its summed token negative log-likelihood, its label
tokens and its token accuracy, and the evaluation's metrics gain ``<prefix>_nll_pooled`` (summed
NLL over summed tokens: the validation loss whose exponential is the perplexity of the whole
evaluation set; Trainer's own ``eval_loss`` averages per-batch means) and
``<prefix>_mean_token_accuracy`` (mean over evaluation batches, as TRL's eval figure).

With N ranks (:mod:`jobs.ranks`) every rank evaluates the whole validation set, in the batches
one process would use, and takes the mean of its own batches' losses: the validation loss is
then exactly the one-rank run's. (Trainer's sharded evaluation normalises each rank's loss by
the tokens of all ranks' batches, which averages right only when every rank's last batch is
as full as the others': with a validation set that does not split evenly into the ranks'
batches it reported 5.78 for a loss of 6.23. The price is N-fold evaluation work.) In training,
each micro-batch's correct and label tokens are summed over the ranks before its accuracy is
taken, so token accuracy is the one-rank run's too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import transformers

from harness.data.tokenization import IGNORE


def token_figures(logits: torch.Tensor, labels: torch.Tensor, *, seq2seq: bool,
                  nll: bool = True) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """(summed NLL or None, correct, label tokens) of one batch, as device tensors. Causal
    models: position t predicts token t+1."""
    if not seq2seq:
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE
    total = None
    if nll:
        total = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
    correct = ((logits.argmax(-1) == labels) & mask).sum()
    return total, correct, mask.sum()


class StepStats:
    """Running sums since the last :meth:`take_counts` (training) or :meth:`reset_eval`."""

    def __init__(self) -> None:
        self.reset()
        self.reset_eval()

    def reset(self) -> None:
        self.loss = None  # sum of micro-batch losses of the current optimizer step
        self.counts: list[torch.Tensor] = []  # per micro-batch: (correct, label tokens), on the device
        self.tokens = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor, predicted: torch.Tensor, tokens: torch.Tensor) -> None:
        loss = loss.detach()
        self.loss = loss if self.loss is None else self.loss + loss
        self.counts.append(torch.stack([correct.to(torch.float64), predicted.to(torch.float64)]))
        self.tokens = self.tokens + tokens

    def take_loss(self) -> float | None:
        """The current step's loss (a host sync), and forget it."""
        loss, self.loss = self.loss, None
        return None if loss is None else float(loss)

    def take_counts(self, reduce=None) -> tuple[float | None, int]:
        """(mean token accuracy over the micro-batches, input tokens) since the last call, and
        forget them; the accuracy is None when there was no micro-batch. ``reduce`` (N ranks:
        ``distributed.sum_tensor_over_ranks``) sums each micro-batch's (correct, label tokens)
        over the ranks first, so a micro-batch's accuracy is the whole one's, as with one
        process. A micro-batch without label tokens counts as accuracy 0."""
        accuracy = None
        if self.counts:
            counts = torch.stack(self.counts)  # [micro-batches, 2]
            if reduce is not None:
                counts = reduce(counts)
            accuracy = float((counts[:, 0] / counts[:, 1].clamp_min(1)).mean())
        tokens = int(self.tokens)
        self.counts, self.tokens = [], 0
        return accuracy, tokens

    # --- evaluation ---

    def reset_eval(self) -> None:
        self.eval_nll = 0
        self.eval_tokens = 0
        self.eval_accuracy_sum = 0
        self.eval_batches = 0

    def add_eval(self, nll: torch.Tensor, correct: torch.Tensor, predicted: torch.Tensor) -> None:
        self.eval_nll = self.eval_nll + nll
        self.eval_tokens = self.eval_tokens + predicted
        if int(predicted):
            self.eval_accuracy_sum = self.eval_accuracy_sum + correct / predicted
            self.eval_batches += 1

    def eval_figures(self) -> dict[str, float]:
        """nll_pooled and mean_token_accuracy of the evaluation since :meth:`reset_eval`."""
        tokens = int(self.eval_tokens)
        if not tokens:
            return {}
        return {"nll_pooled": float(self.eval_nll) / tokens, "mean_token_accuracy": float(self.eval_accuracy_sum) / self.eval_batches,
                "tokens": float(tokens)}


class Trainer(transformers.Trainer):
    """A Trainer that feeds :class:`StepStats` while it trains and while it evaluates."""

    def __init__(self, *args, seq2seq: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seq2seq = seq2seq
        self.step_stats = StepStats()

    def get_eval_dataloader(self, eval_dataset=None):
        loader = super().get_eval_dataloader(eval_dataset)
        if self.args.world_size > 1:
            # Every rank iterates every batch (see the module), as Trainer itself makes accelerate's
            # batch sharding a pass-through for a sampler that is already rank-aware; nor is the
            # last batch filled up with repeated examples.
            shard = getattr(loader, "batch_sampler", None)
            if shard is not None and hasattr(shard, "num_processes"):
                shard.num_processes, shard.process_index, shard.even_batches = 1, 0, False
        return loader

    def evaluation_loop(self, *args, **kwargs):
        if self.args.world_size > 1:  # each rank has every batch's loss already: no gathering
            self.gather_function = self._local_for_metrics
        self.step_stats.reset_eval()
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        output.metrics.update({f"{prefix}_{k}": v for k, v in self.step_stats.eval_figures().items()})
        return output

    def _local_for_metrics(self, tensors):
        """``accelerator.gather_for_metrics`` without the gathering: the last batch's figures
        cut to the examples it really has (the loop repeats each batch's loss batch-size times)."""
        state = self.accelerator.gradient_state
        if state.end_of_dataloader and state.remainder > 0:
            return tensors[: state.remainder]
        return tensors

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if labels is not None:
            with torch.no_grad():
                nll, correct, predicted = token_figures(outputs.logits, labels, seq2seq=self.seq2seq,
                                                        nll=not model.training)
                if model.training:
                    mask_tokens = inputs.get("attention_mask")
                    tokens = mask_tokens.sum() if mask_tokens is not None else torch.tensor(inputs["input_ids"].numel())
                    self.step_stats.add(loss, correct, predicted, tokens)
                else:
                    self.step_stats.add_eval(nll, correct, predicted)
        return (loss, outputs) if return_outputs else loss

def pooled_evaluation(model: torch.nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], *,
                      seq2seq: bool) -> dict[str, float]:
    """The evaluation figures of :class:`Trainer` (``nll_pooled``, ``mean_token_accuracy``,
    ``tokens``) for `model` on `batches`, outside any Trainer (the model before a norm swap)."""
    stats = StepStats()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items()}
                out = model(**batch)
                stats.add_eval(*token_figures(out.logits, batch["labels"], seq2seq=seq2seq))
    finally:
        model.train(was_training)
    return stats.eval_figures()
