"""Data-parallel runs under ``torchrun``: one process per device, DistributedDataParallel.

``torchrun --nproc_per_node 2 -m compress train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; without
them everything here is the identity and costs nothing. ``--batch-size`` stays the GLOBAL batch:
each of N processes takes its 1/N share of every batch, so a run on N processes follows the same
trajectory as one process with the same batch size and seed (up to float summation order).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from compress.errors import CompressError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, start: int, stop: int) -> tuple[int, int]:
        """This process's part of the global batch ``[start, stop)``: contiguous, sizes differing by
        at most one, so the parts of all processes put together are exactly the global batch."""
        n = stop - start
        lo = start + (n * self.rank) // self.size
        hi = start + (n * (self.rank + 1)) // self.size
        return lo, hi

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over processes (in place); the identity in a single process."""
        if self.distributed:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when it is true on one: decisions to stop must be taken together,
        or the others would wait forever in the next all-reduce."""
        if not self.distributed:
            return flag
        return bool(self.sum(torch.tensor([float(flag)], device=device)).item() > 0)

    def max(self, value: int, device: torch.device) -> int:
        """The largest of every process's ``value`` (a collective: all processes must call it)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], device=device, dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())


SINGLE = World()


def world_from_env() -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    try:
        return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise CompressError("WORLD_SIZE is set but RANK is not: start data-parallel runs with torchrun") from None


def init_world(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group (NCCL on CUDA, gloo on the CPU) and pin this process to its device."""
    world = world_from_env()
    if not world.distributed:
        return world, device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world, device


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The module the loop calls; parameters stay the plain model's, so names never get ``module.``."""
    if not world.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def leave(world: World, *, together: bool) -> None:
    """Leave the process group so that no rank aborts at exit. The caller must have dropped the DDP
    wrapper first: it holds the process group, which then outlives ``destroy_process_group`` and keeps
    gloo's worker threads running into interpreter shutdown, where a worker still releasing the last
    all-reduce's tensor needs the GIL and aborts the process ("terminate called without an active
    exception", 1 run in 4 on 2 CPU processes). Destroyed here, the group joins its threads first.

    ``together``: every process reached this point at the same step (a finished run, or a stop or
    divergence that ``World.any`` decided for all), so each waits for the first to finish writing;
    after any other error a peer may never arrive, and nobody waits."""
    if not (world.distributed and dist.is_initialized()):
        return
    if together:
        dist.barrier()
    gc.collect()  # the DDP wrapper sits in reference cycles (its hooks): free it before the group goes
    dist.destroy_process_group()
