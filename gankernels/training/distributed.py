"""Data-parallel training across processes started by torchrun (gloo on CPU, nccl on CUDA).

As NVlabs' StyleGAN2 training loop, gradients are averaged with one all_reduce of the flattened gradients per
optimizer step rather than through DistributedDataParallel: the gradient penalties differentiate the networks twice,
which DDP's hooks do not support, and every rank then holds identical parameters after each step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1), or return the single-process DistInfo."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown(synchronize: bool = False) -> None:
    """Leave the process group. synchronize (the normal end of a run): a barrier first, so that no rank tears the
    group down while another still has collective work in flight on it (once, on a loaded machine, a gloo rank aborted
    at exit after a finished run: "terminate called without an active exception"). Not after an error: another rank
    may be gone, and the barrier would wait for it."""
    if dist.is_available() and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if info.world_size == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def average_gradients(params, info: DistInfo) -> None:
    """Average .grad across ranks (one all_reduce of the flattened gradients); None grads count as zeros.
    Non-finite values are zeroed as NVlabs does, so one bad step cannot poison the weights.

    A few launches per network, not one per parameter: the gradients are flattened into one buffer per (device,
    dtype) (torch.cat), reduced and cleaned there (one all_reduce, one division, one nan_to_num_), and copied back
    with one torch._foreach_copy_. Single process: None grads stay None, the others are cleaned in place."""
    params = [p for p in params if p.requires_grad]
    if info.world_size == 1:
        params = [p for p in params if p.grad is not None]
    groups: dict[tuple, list[torch.nn.Parameter]] = {}
    for p in params:
        groups.setdefault((p.device, p.dtype), []).append(p)
    for group in groups.values():
        for p in group:
            if p.grad is None:  # world_size > 1: a rank that did not touch p still takes part in the average
                p.grad = torch.zeros_like(p, memory_format=torch.contiguous_format)
        grads = [p.grad for p in group]
        flat = torch.cat([g.flatten() for g in grads])
        if info.world_size > 1:
            dist.all_reduce(flat)
            flat /= info.world_size
        torch.nan_to_num_(flat, nan=0, posinf=1e5, neginf=-1e5)
        pieces = flat.split([g.numel() for g in grads])
        torch._foreach_copy_(grads, [v.view_as(g) for v, g in zip(pieces, grads, strict=True)])


def all_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a tensor across ranks (for logged statistics)."""
    if info.world_size == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / info.world_size


def module_checksum(module: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in module.parameters()))
