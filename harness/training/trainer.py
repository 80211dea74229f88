"""transformers' Trainer, plus the per-step figures it does not count itself.

`Trainer.compute_loss` is extended to accumulate, per optimizer step, the loss of every
micro-batch, the number of label tokens predicted correctly (token accuracy, as TRL's
``mean_token_accuracy``) and the number of input tokens. The figures stay on the device as
tensors until :class:`harness.training.callbacks.GridlabCallback` reads them, so counting
adds no host synchronisation.

With N ranks (:mod:`jobs.ranks`) every rank evaluates the whole validation set, in the batches
one process would use, and takes the mean of its own batches' losses: the validation loss is
then exactly the one-rank run's. (Trainer's sharded evaluation normalises each rank's loss by
the tokens of all ranks' batches, which averages right only when every rank's last batch is
as full as the others': with a validation set that does not split evenly into the ranks'
batches it reported 5.78 for a loss of 6.23. The price is N-fold evaluation work.)
"""

from __future__ import annotations

import torch
import transformers

IGNORE = -100


class StepStats:
    """Running sums since the last :meth:`take`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss = None  # sum of micro-batch losses of the current optimizer step
        self.correct = 0
        self.predicted = 0
        self.tokens = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor, predicted: torch.Tensor, tokens: torch.Tensor) -> None:
        loss = loss.detach()
        self.loss = loss if self.loss is None else self.loss + loss
        self.correct = self.correct + correct
        self.predicted = self.predicted + predicted
        self.tokens = self.tokens + tokens

    def take_loss(self) -> float | None:
        """The current step's loss (a host sync), and forget it."""
        loss, self.loss = self.loss, None
        return None if loss is None else float(loss)

    def take_counts(self) -> tuple[int, int, int]:
        """(correct, predicted, tokens) since the last call, and forget them."""
        out = (int(self.correct), int(self.predicted), int(self.tokens))
        self.correct = self.predicted = self.tokens = 0
        return out


class Trainer(transformers.Trainer):
    """A Trainer that feeds :class:`StepStats` while it trains (evaluation is left alone)."""

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
        return super().evaluation_loop(*args, **kwargs)

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
        if model.training and labels is not None:
            with torch.no_grad():
                logits = outputs.logits
                if not self.seq2seq:  # causal: position t predicts token t+1
                    logits, labels = logits[:, :-1], labels[:, 1:]
                mask = labels != IGNORE
                correct = ((logits.argmax(-1) == labels) & mask).sum()
                mask_tokens = inputs.get("attention_mask")
                tokens = mask_tokens.sum() if mask_tokens is not None else torch.tensor(inputs["input_ids"].numel())
                self.step_stats.add(loss, correct, mask.sum(), tokens)
        return (loss, outputs) if return_outputs else loss

