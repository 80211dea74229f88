"""The Trainer callback that moves a healed norm swap along (:mod:`harness.models.healing`).

After every optimizer step the healing norms' mix is set for the steps done, so evaluations and
checkpoints see the schedule's state at their step and the model after the last step has no
original norm left in its computation. The first call of an attempt (a fresh start or a resume)
only sets the mix: a resumed checkpoint already holds the weights that earlier switches carried
into their targets. The number of norms switched so far is logged as ``norms_healed`` whenever it
changes.
"""

from __future__ import annotations

import transformers

from harness.models import healing


class HealingCallback(transformers.TrainerCallback):
    def __init__(self, model, ctx) -> None:
        self.model = model
        self.ctx = ctx
        self._started = False
        self._healed: int | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        if not self._started:
            self._started = True
            self._record(state.global_step, healing.set_step(self.model, state.global_step, carry_parameters=False))

    def on_step_end(self, args, state, control, **kwargs):
        self._record(state.global_step, healing.set_step(self.model, state.global_step))

    def _record(self, step: int, healed: int) -> None:
        if healed != self._healed:
            self._healed = healed
            self.ctx.log(step, {"norms_healed": float(healed), "heal_progress": healing.progress(self.model)})
