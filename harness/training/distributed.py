"""What the training recipe does differently when its job runs as N ranks (:mod:`jobs.ranks`).

transformers' Trainer does the distributed training itself once torchrun has started the
ranks (accelerate wraps the model in DDP, or shards it with FSDP, and shards each global batch
between the ranks); this module gives it its settings and the few agreements it lacks:

- :func:`trainer_arguments`: per-rank batch (the spec's ``batch_size`` is the global
  micro-batch, split evenly), the backend (gloo on CPU) and FSDP when asked for (FSDP2 through
  accelerate, each transformer block a unit; GPUs only: refused on the CPU, where accelerate
  would fall back to DDP without a word);
- :func:`any_rank`: flags (stop, a non-finite loss) agreed across ranks at a step, so every rank
  checkpoints and stops at the same one (a rank stopping alone would leave the others waiting
  in the next gradient all-reduce);
- :func:`main_first`: rank 0 runs a set-up step (building a tiny model into its cache, a hub
  download, a dataset read) before the others, who then find it done instead of racing it;
- :func:`sum_over_ranks` / :func:`sum_tensor_over_ranks`: counts (each micro-batch's correct and
  label tokens, input tokens) summed over ranks before rank 0 logs them, so token accuracy and
  tokens/s are the whole step's, like the loss Trainer logs (the
  mean of the ranks' losses, each already normalised by the global token count).

With one process these are plain pass-throughs. Every collective here must be called by every
rank at the same point; the callbacks call them from Trainer events that every rank sees.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from db.errors import GridlabError


class NoGPUsForFSDP(GridlabError):
    """``parallelism: fsdp`` on a node without GPUs: accelerate shards a model on accelerators
    only, and on the CPU Trainer would quietly train a full replica per rank (DDP) instead.
    An ``error`` (retried): another node may have GPUs."""


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(*flags: bool) -> tuple[bool, ...]:
    """Each flag, True if it is True on any rank (collective)."""
    if world_size() == 1:
        return tuple(bool(f) for f in flags)
    import torch.distributed as dist

    t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


def sum_over_ranks(*values: int) -> tuple[int, ...]:
    """Each integer summed over the ranks (collective)."""
    if world_size() == 1:
        return tuple(int(v) for v in values)
    import torch.distributed as dist

    t = torch.tensor([int(v) for v in values], dtype=torch.int64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return tuple(int(v) for v in t.tolist())


def sum_tensor_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed elementwise over the ranks (collective; every rank's ``t`` has one shape)."""
    if world_size() == 1:
        return t
    import torch.distributed as dist

    t = t.to(_device()).contiguous()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """The block runs on rank 0 first, then on the other ranks (collective; as accelerate's
    ``main_process_first``). A pass-through for one process."""
    if world_size() == 1:
        yield
        return
    import torch.distributed as dist

    main = dist.get_rank() == 0
    if not main:
        dist.barrier()
    yield
    if main:
        dist.barrier()


def trainer_arguments(spec: dict[str, Any], ranks: int, *, block_classes: tuple[str, ...] = ()) -> dict[str, Any]:
    """TrainingArguments keywords for ``ranks`` processes (nothing changes for one)."""
    # Each rank evaluates the whole validation set in whole batches (harness.training.trainer).
    args: dict[str, Any] = {"per_device_train_batch_size": spec["batch_size"] // ranks,
                            "per_device_eval_batch_size": spec["batch_size"]}
    if ranks == 1:
        return args
    if not torch.cuda.is_available():
        args.update(use_cpu=True, ddp_backend="gloo")  # Trainer takes the multi-CPU path only when asked
    if spec.get("parallelism", "ddp") == "fsdp":
        if not torch.cuda.is_available():
            raise NoGPUsForFSDP("parallelism fsdp needs GPUs and this node has none (accelerate shards models on "
                                "accelerators only; on the CPU each rank would quietly hold the whole model)",
                                "run the cell where there are GPUs, or set parallelism: ddp")
        config: dict[str, Any] = {"version": 2, "reshard_after_forward": True}
        if block_classes:
            config.update(auto_wrap_policy="TRANSFORMER_BASED_WRAP", transformer_layer_cls_to_wrap=list(block_classes))
        args.update(fsdp="full_shard auto_wrap" if block_classes else "full_shard", fsdp_config=config)
    return args
