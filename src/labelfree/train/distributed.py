"""Multi-process training with torch.distributed (DDP), launched by torchrun.

``torchrun --nproc_per_node N -m labelfree.cli fit ...`` sets RANK / WORLD_SIZE / MASTER_ADDR;
:func:`init_from_env` then joins the process group (NCCL on GPU, gloo on CPU). Every rank builds
the same structure (it is deterministic), trains on its share of the epoch's batches, and rank 0
alone writes checkpoints, logs and outputs.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as td
from torch import nn


def init_from_env(device: torch.device) -> bool:
    """Join the process group when launched by torchrun; True when running distributed."""
    if td.is_available() and not td.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        td.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world_size() > 1


def rank() -> int:
    return td.get_rank() if td.is_available() and td.is_initialized() else 0


def world_size() -> int:
    return td.get_world_size() if td.is_available() and td.is_initialized() else 1


def local_device(device: torch.device) -> torch.device:
    """On multi-GPU runs each process uses the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def wrap(net: nn.Module) -> nn.Module:
    dev = next(net.parameters()).device
    return nn.parallel.DistributedDataParallel(
        net, device_ids=[dev.index] if dev.type == "cuda" else None
    )


def average_gradients(module: nn.Module) -> None:
    """All-reduce the gradients of a module that DDP does not wrap (a stage's extra head)."""
    ws = world_size()
    for p in module.parameters():
        if p.grad is not None:
            td.all_reduce(p.grad)
            p.grad /= ws


def sync_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP keeps parameters identical, but each rank updates running statistics on its own batches;
    syncing at every epoch end makes checkpoints and the final model the same on all ranks.
    """
    if world_size() == 1:
        return
    for b in module.buffers():
        td.broadcast(b.data, src=0)


def mean_scalar(x: float) -> float:
    if world_size() == 1:
        return x
    dev = torch.device("cuda", torch.cuda.current_device()) if td.get_backend() == "nccl" else None
    t = torch.tensor([x], dtype=torch.float64, device=dev)
    td.all_reduce(t)
    return float(t.item() / world_size())


def barrier() -> None:
    if world_size() > 1:
        td.barrier()
