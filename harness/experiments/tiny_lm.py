"""The demo experiment: train a tiny GPT-2-style causal LM, built offline from a config,
on synthetic arithmetic text, and log loss and step time per step.

Everything it needs is generated here: no hub, no data files. It checkpoints every
``checkpoint_every`` steps and resumes exactly (model, optimizer, data position, RNG),
and stops cleanly when the worker asks (``ctx.should_stop()``).
"""

from __future__ import annotations

import math
import time

from jobs.params import Param

#: The one file of a tiny_lm checkpoint: model, optimizer, data RNG and step (tensors and plain
#: containers only, loaded with ``weights_only=True``).
STATE_FILE = "state.pt"

#: Tiny model shapes this experiment can build from a config.
MODELS = {
    "tiny-gpt2": {"n_layer": 2, "n_embd": 64, "n_head": 4},
    "tiny-gpt2-deep": {"n_layer": 4, "n_embd": 64, "n_head": 4},
}

PARAMS = {
    "model": Param(str, "tiny-gpt2", "model shape", choices=tuple(MODELS)),
    "activation": Param(str, "gelu", "MLP activation", choices=("gelu", "relu")),
    "lr": Param(float, 3e-3, "AdamW learning rate", minimum=0.0),
    "steps": Param(int, 40, "optimizer steps", minimum=1),
    "batch_size": Param(int, 8, "sequences per batch", minimum=1),
    "seq_len": Param(int, 64, "tokens per sequence", minimum=8),
    "seed": Param(int, 0, "seed for weights and data order"),
    "checkpoint_every": Param(int, 10, "steps between checkpoints", minimum=1),
    "eval_batches": Param(int, 4, "validation batches at the end", minimum=1),
    "step_delay_s": Param(float, 0.0, "sleep per step (to test preemption)", minimum=0.0),
}

VOCAB = 256  # bytes


def synthetic_text(seed: int, n_lines: int = 4000) -> bytes:
    """Deterministic arithmetic sentences: enough structure that loss falls quickly."""
    import random

    rng = random.Random(seed)
    ops = [("plus", lambda a, b: a + b), ("minus", lambda a, b: a - b), ("times", lambda a, b: a * b)]
    lines = []
    for _ in range(n_lines):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        word, fn = rng.choice(ops)
        lines.append(f"{a} {word} {b} is {fn(a, b)}.")
    return ("\n".join(lines) + "\n").encode()


def run(ctx) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from jobs.errors import Diverged, Interrupted

    spec = ctx.spec
    torch.manual_seed(spec["seed"])
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=spec["seq_len"],
        activation_function="gelu_new" if spec["activation"] == "gelu" else "relu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
        **MODELS[spec["model"]],
    )
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # silences transformers' "loss_type=None" warning
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec["lr"])
    data = torch.frombuffer(bytearray(synthetic_text(spec["seed"])), dtype=torch.uint8).long()
    split = int(len(data) * 0.9)
    train, val = data[:split], data[split:]
    gen = torch.Generator().manual_seed(spec["seed"])

    step = 0
    if ctx.resume_from is not None:  # the sealed checkpoint the database recorded, verified
        state = torch.load(ctx.resume_from / STATE_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["data_rng"])
        step = int(state["step"])

    def batch(source, g):
        starts = torch.randint(0, len(source) - spec["seq_len"] - 1, (spec["batch_size"],), generator=g)
        return torch.stack([source[s : s + spec["seq_len"]] for s in starts.tolist()])

    def save() -> None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "data_rng": gen.get_state(), "step": step}
        staging = ctx.attempt_dir / f"ckpt-{step}"
        staging.mkdir(parents=True, exist_ok=True)
        with open(staging / STATE_FILE, "wb") as f:  # through a file: a full disk is an OSError (ENOSPC)
            torch.save(state, f)
            f.flush()
        # ctx.checkpoint fsyncs and hashes every file of the directory when it seals it.
        ctx.checkpoint(staging, step)

    model.train()
    tokens_per_step = spec["batch_size"] * spec["seq_len"]
    while step < spec["steps"]:
        if ctx.should_stop():
            save()
            raise Interrupted(ctx.stop_reason, ctx.stop_outcome)
        t0 = time.perf_counter()
        x = batch(train, gen)
        loss = model(input_ids=x, labels=x).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        optimizer.step()
        step += 1
        value = loss.item()
        dt = time.perf_counter() - t0
        ctx.log(step, {"loss": value, "grad_norm": grad_norm, "step_time_s": dt, "tokens_per_s": tokens_per_step / dt, "lr": spec["lr"]})
        if not math.isfinite(value):
            raise Diverged(step, f"loss={value}")
        if step % spec["checkpoint_every"] == 0 and step < spec["steps"]:
            save()
        if spec["step_delay_s"]:
            time.sleep(spec["step_delay_s"])

    model.eval()
    eval_gen = torch.Generator().manual_seed(10_000 + spec["seed"])
    with torch.no_grad():
        losses = [float(model(input_ids=(x := batch(val, eval_gen)), labels=x).loss) for _ in range(spec["eval_batches"])]
    val_loss = sum(losses) / len(losses)
    ctx.log(step, {"val_loss": val_loss, "val_perplexity": math.exp(val_loss)})
    ctx.summary({"val_loss": val_loss, "val_perplexity": math.exp(val_loss), "steps": step,
                 "params": sum(p.numel() for p in model.parameters())})
