"""The Trainer callback that moves a healed norm swap along (:mod:`harness.models.healing`).

After every optimizer step the healing norms' mix is set for the steps done, so evaluations and
checkpoints see the schedule's state at their step and the model after the last step has no
original norm left in its computation. A DyT norm switching at a step gets its alpha fitted
again on the current model (``calibrate.refit``, on the recipe's calibration batches: real tokens
only); the fitted alphas are logged as ``heal_alpha/<norm>``. The first call of an attempt (a
fresh start or a resume) only sets the mix: a resumed checkpoint already holds the weights and
alphas that earlier switches gave their targets. The number of norms switched so far is logged
as ``norms_healed`` whenever it changes.
"""

from __future__ import annotations

import transformers

from harness.models import calibrate, healing


class HealingCallback(transformers.TrainerCallback):
    def __init__(self, model, ctx, *, refit_batches=(), seed: int = 0) -> None:
        self.model = model
        self.ctx = ctx
        self.refit_batches = list(refit_batches)
        self.seed = seed
        self._started = False
        self._healed: int | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        if not self._started:
            self._started = True
            healing.set_step(self.model, state.global_step, carry_parameters=False)
            self._record(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        switched = healing.set_step(self.model, state.global_step)
        if switched and self.refit_batches:
            names = {module: name for name, module in self.model.named_modules() if module in switched}
            device = next(self.model.parameters()).device
            batches = [{k: v.to(device) for k, v in b.items()} for b in self.refit_batches]
            fits = calibrate.refit(self.model, {names[m]: m for m in switched}, batches, seed=self.seed)
            if fits:
                self.ctx.log(state.global_step, {f"heal_alpha/{_short(f.name)}": f.alpha for f in fits})
        self._record(state.global_step)

    def _record(self, step: int) -> None:
        healed = healing.healed(self.model)
        if healed != self._healed:
            self._healed = healed
            self.ctx.log(step, {"norms_healed": float(healed), "heal_progress": healing.progress(self.model)})


def _short(name: str) -> str:
    """A norm's name without peft's wrapper prefixes (base_model.model., modules_to_save.default.)."""
    for prefix in ("base_model.model.",):
        name = name.removeprefix(prefix)
    return name.replace(".modules_to_save.default", "")
