"""Process-group setup: one code path for 1 CPU process, N CPU processes (gloo) and N GPUs (nccl).

`torchrun` describes the group in environment variables (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT); without them we are a single process and nothing is initialised.
"""

from __future__ import annotations

import datetime
import logging
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None when not distributed

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, backend: str | None = None, device: str | None = None) -> DistContext:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        target = torch.device(device)
        if target.type == "cuda":
            torch.cuda.set_device(target)
        if world_size <= 1:
            return cls(0, 1, 0, target, None)
        chosen = backend or ("nccl" if target.type == "cuda" else "gloo")
        if not dist.is_initialized():
            dist.init_process_group(
                backend=chosen,
                init_method="env://",
                rank=rank,
                world_size=world_size,
                timeout=datetime.timedelta(minutes=10),
            )
        if target.type == "cpu":
            # Share the cores between the ranks on this host instead of oversubscribing them.
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))
        log.debug("rank %d/%d on %s (%s)", rank, world_size, target, chosen)
        return cls(rank, world_size, local_rank, target, chosen)

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP-wrap a module (no-op for a single process). Every parameter must get a gradient each step."""
        if not self.distributed or not any(p.requires_grad for p in module.parameters()):
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)

    @staticmethod
    def no_sync(module: nn.Module) -> AbstractContextManager:
        """Skip DDP's gradient all-reduce for a forward whose gradients are thrown away
        (the discriminators' pass inside the generator update)."""
        return module.no_sync() if isinstance(module, nn.parallel.DistributedDataParallel) else nullcontext()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size

    def max_over_ranks(self, value: int) -> int:
        """The largest `value` any rank passed (a collective: every rank must call it at the same point).

        Used once per step for the stop flag. Its cost is one 4-byte all-reduce, small next to the step's
        gradient all-reduces; on GPU its `.item()` waits for the step's kernels, which the loss `.item()`
        calls of the step have already waited for anyway.
        """
        if not self.distributed:
            return value
        flag = torch.tensor([value], dtype=torch.int32, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP and/or torch.compile wrappers."""
    inner = getattr(module, "_orig_mod", module)
    inner = getattr(inner, "module", inner)
    return getattr(inner, "_orig_mod", inner)
