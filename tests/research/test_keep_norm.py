"""`norm: keep` is the sft default: no norm of any family is touched, T5's RMS norms included;
`layernorm` on T5 still means what it says (mean-centring LayerNorms), and grids that named their
norm keep their cells' identity."""

from __future__ import annotations

import pytest

from harness import experiments
from harness.grid import parse
from harness.models import norms, surgery, tiny
from harness.params import resolve, stored

pytestmark = pytest.mark.unit

SFT = experiments.load("sft")


@pytest.mark.parametrize("name", sorted(tiny.TINY))
def test_the_default_norm_touches_no_norm(name, load_tiny):
    model, _, _ = load_tiny(name)
    before = dict(model.named_modules())
    default = SFT.PARAMS["norm"].default
    assert default == "keep"
    report = surgery.swap_norm(model, default)
    assert report.replaced == ()
    assert all(after is before[n] for n, after in model.named_modules())
    assert len(report.kept) == len(surgery.norm_modules(model))


def test_t5_keeps_its_rms_norms_by_default_and_gets_layernorm_only_when_asked(load_tiny):
    model, _, _ = load_tiny("tiny-t5")
    kinds = {norms.kind_of(m) for m in surgery.norm_modules(model).values()}
    assert kinds == {"rmsnorm"}
    assert {type(m).__name__ for m in surgery.norm_modules(model).values()} == {"T5LayerNorm"}
    surgery.swap_norm(model, "keep")
    assert {type(m).__name__ for m in surgery.norm_modules(model).values()} == {"T5LayerNorm"}
    report = surgery.swap_norm(model, "layernorm")  # asked for by name: swapped
    assert len(report.replaced) == 12


def test_a_cell_without_norm_resolves_to_keep_and_stores_no_norm():
    (cell,) = parse("name: g\nexperiment: sft\nfixed: {model: tiny-t5}\n"
                    "include: [{seed: 0}]\n").cells()
    assert "norm" not in cell.spec  # neutral at its default: out of the stored spec and its hash
    assert resolve(SFT.PARAMS, cell.spec)["norm"] == "keep"


def test_cells_that_name_their_norm_keep_their_hash():
    """Stored specs from before `keep` existed held norm: layernorm; naming it keeps the identity."""
    text = "name: g\nexperiment: sft\naxes: {norm: [layernorm, dyt], seed: [0]}\n"
    cells = list(parse(text).cells())
    assert [c.spec["norm"] for c in cells] == ["layernorm", "dyt"]
    assert stored(SFT.PARAMS, {"norm": "layernorm"}) == {"norm": "layernorm"}


def test_new_sft_settings_stay_out_of_old_specs():
    """heal, per-role alphas and eval_at_start are neutral: at their defaults, specs are as before."""
    for name in ("heal", "heal_steps", "dyt_alpha_attn", "dyt_alpha_ffn", "dyt_alpha_final", "eval_at_start", "norm"):
        assert SFT.PARAMS[name].neutral, name
    (cell,) = parse("name: g\nexperiment: sft\ninclude: [{seed: 0}]\n").cells()
    assert not {"heal", "heal_steps", "dyt_alpha_attn", "eval_at_start"} & set(cell.spec)


def test_heal_needs_a_dyt_or_none_swap_and_fits_in_the_run():
    base = resolve(SFT.PARAMS, {})
    assert SFT.check_spec({**base, "norm": "dyt", "heal": "layerwise"}) is None
    assert "heal replaces norms" in SFT.check_spec({**base, "norm": "keep", "heal": "layerwise"})
    assert "past the last step" in SFT.check_spec({**base, "norm": "dyt", "heal": "blend", "heal_steps": 10_000})
