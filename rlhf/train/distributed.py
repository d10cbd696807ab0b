"""Data parallelism under torchrun: DDP, or FSDP (per-block sharding), on CPUs (gloo) and GPUs.

Each optimizer step takes one global batch; rank r trains on its items r, r + W, r + 2W, ... in
micro-batches. A micro-batch's loss is its *sum* divided by the count (pairs or tokens) of the
whole global batch, times W because DDP and FSDP average gradients over the ranks: the
gradient is then exactly that of the mean over the global batch, the same as one process
computes (up to the order of float additions).

Without torchrun (no WORLD_SIZE in the environment) everything runs in this one process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

STRATEGIES = ("ddp", "fsdp")
T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's part of a global batch."""
        return list(items[self.rank :: self.world])

    def wrap(self, module: nn.Module, strategy: str) -> nn.Module:
        """`module` ready for data-parallel training: DDP, or FSDP2 with one unit per decoder
        block (so a block's full weights exist only while it runs) and the rest at the root."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}: expected one of {STRATEGIES}")
        if self.world == 1:
            return module
        if strategy == "ddp":
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            return DistributedDataParallel(module, device_ids=device_ids)
        from torch.distributed.fsdp import fully_shard

        from modelcore.model import Block

        for block in [m for m in module.modules() if isinstance(m, Block)]:
            fully_shard(block)
        fully_shard(module)
        return module

    @contextlib.contextmanager
    def gradient_sync(self, module: nn.Module, enabled: bool) -> Iterator[None]:
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if self.world == 1 or enabled:
            yield
        elif isinstance(module, DistributedDataParallel):
            with module.no_sync():
                yield
        else:  # FSDP2
            module.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                module.set_requires_gradient_sync(True)

    @contextlib.contextmanager
    def full_weights(self, wrapped: nn.Module) -> Iterator[None]:
        """Under FSDP, every weight gathered in full on every rank and kept so, for work outside
        the wrapped forward once training is over: evaluation, which may then run differently
        on each rank (no collective runs inside), and saving. Nothing to do otherwise."""
        from torch.distributed.fsdp import FSDPModule

        sharded = [m for m in wrapped.modules() if isinstance(m, FSDPModule)]
        for module in sharded:
            module.set_reshard_after_forward(False, recurse=False)
            module.unshard()
        try:
            yield
        finally:
            for module in sharded:
                module.reshard()
                module.set_reshard_after_forward(True, recurse=False)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the ranks (a new tensor)."""
        values = values.detach().clone()
        if self.world > 1:
            dist.all_reduce(values)
        return values

    def gather(self, items: list[Any]) -> list[Any]:
        """Every rank's list, concatenated in the order of `shard` (item i of the global
        batch back at place i)."""
        if self.world == 1:
            return items
        lists: list[Any] = [None] * self.world
        dist.all_gather_object(lists, items)
        merged: list[Any] = []
        for index in range(max(len(part) for part in lists)):
            merged += [part[index] for part in lists if index < len(part)]
        return merged

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's value of `flag` on every rank (a stop request must stop all of them)."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup(device: str) -> Distributed:
    """This process's place: under torchrun join (or reuse) the process group, with gloo on CPU
    and NCCL on GPUs, one GPU per local rank."""
    if "WORLD_SIZE" not in os.environ:
        return Distributed(0, 1, torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        place = torch.device("cuda", local_rank)
    else:
        place = torch.device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if place.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), place)
