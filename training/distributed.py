"""Process-group helpers shared by the GAN and encoder trainers (gloo, CPU, ``torchrun``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """Rank/world of this process; ``owns_group`` when :meth:`from_env` created the group."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @classmethod
    def from_env(cls) -> DistContext:
        """Join the gloo group of a ``torchrun`` launch (``WORLD_SIZE > 1``), else single."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), False)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            dist.init_process_group("gloo")
            return cls(dist.get_rank(), dist.get_world_size(), True)
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Leave the group; every rank waits for the others first (a rank that tears gloo down
        while a peer still talks to it aborts with 'terminate called without an active
        exception', seen on a loaded 2-core machine)."""
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def all_reduce_mean_(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
            t /= self.world
        return t

    def all_reduce_max_(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    def average_grads(self, params: list[torch.Tensor]) -> None:
        """Average ``.grad`` of ``params`` over ranks with one flat all-reduce."""
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.all_reduce_mean_(flat)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            if p.grad is None:
                p.grad = torch.empty_like(p)
            p.grad.copy_(flat[offset : offset + n].view(g.shape))
            offset += n

    def broadcast_(self, tensors: list[torch.Tensor]) -> None:
        if self.world > 1:
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def gather_rng_states(self) -> torch.Tensor:
        """Global torch RNG states of all ranks, ``[W, n] uint8``."""
        state = torch.get_rng_state()
        if self.world == 1:
            return state[None].clone()
        out = [torch.empty_like(state) for _ in range(self.world)]
        dist.all_gather(out, state)
        return torch.stack(out)

    def check_batch(self, batch_size: int) -> None:
        """``ValueError`` unless the global ``batch_size`` splits evenly over the ranks."""
        if batch_size % self.world:
            raise ValueError(f"batch_size {batch_size} is not divisible by {self.world} ranks")
