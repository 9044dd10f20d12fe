"""Data-parallel training under ``torchrun``: what ``training.fit`` needs to run unchanged on N processes.

``torchrun --nproc_per_node=N script.py`` starts N copies of the script with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in the environment. ``fit`` then

* joins the process group (``init_from_env``: ``gloo`` on the CPU, ``nccl`` on CUDA),
* wraps the model in ``DistributedDataParallel`` (gradients are averaged, so every rank keeps the
  same parameters),
* gives each rank a disjoint share of every epoch (``shard_loader``: a ``DistributedSampler``,
  reshuffled per epoch from a seed),
* sums each epoch's totals over the ranks (``all_reduce_sums``), so the history is the global mean,
* shows progress bars and writes checkpoints on rank 0 only (``is_main_process``).

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) none of this happens and ``fit`` is the plain loop.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

__all__ = ["world_size", "rank", "is_main_process", "init_from_env", "shard_loader", "all_reduce_sums", "gather_objects", "check_backend",
           "broadcast_buffers"]

BACKENDS = ("gloo", "nccl")


def world_size() -> int:
    """The number of processes training together: the process group's size, else ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 without ``torchrun``)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0, the process that shows progress and writes files."""
    return rank() == 0


def check_backend(backend: str | None, device: torch.device) -> str:
    """The process-group backend for ``device``: ``backend`` if given, else ``nccl`` on CUDA and ``gloo`` on the CPU.

    Raises ValueError if it is unknown, not built into this PyTorch, or ``nccl`` without CUDA.
    """
    if not dist.is_available():
        raise ValueError("this PyTorch was built without torch.distributed; run without torchrun")
    backend = backend if backend is not None else ("nccl" if device.type == "cuda" else "gloo")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(f"backend 'nccl' needs CUDA devices, but training runs on {device}; use 'gloo'")
    if not dist.is_backend_available(backend):
        raise ValueError(f"the {backend!r} process-group backend is not available in this PyTorch build")
    return backend


def init_from_env(device: torch.device, backend: str | None = None) -> torch.device:
    """Join the process group ``torchrun`` describes in the environment (once) and return this rank's device.

    On CUDA each rank takes the GPU ``LOCAL_RANK``; on the CPU the device is unchanged.
    """
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE > 1 but {', '.join(missing)} not set: launch with torchrun --nproc_per_node=N")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=check_backend(backend, device))
    return device


def shard_loader(loader: DataLoader, num_replicas: int, rank: int, seed: int = 0, even: bool = True) -> DataLoader:
    """The same loader (batch size, collate, workers) over this rank's share of the data set.

    ``even=True`` (training): a ``DistributedSampler``; shuffling stays on if ``loader`` shuffled, the
    order drawn from ``seed`` and the epoch (``loader.sampler.set_epoch(epoch)``), the same on every
    rank, so the shares never overlap; shares are padded with repeated samples to equal sizes (every
    rank must take the same number of steps). ``even=False`` (evaluation): samples ``rank``,
    ``rank + num_replicas``, ... in order, no padding, so every sample counts once.
    """
    if not isinstance(loader, DataLoader):
        raise TypeError(f"under torchrun the loader must be a torch DataLoader, got {type(loader).__name__}")
    dataset = loader.dataset
    if len(dataset) < num_replicas:
        raise ValueError(f"the data set has {len(dataset)} samples, fewer than the {num_replicas} processes: every rank needs one")
    if loader.batch_size is None:
        raise ValueError("under torchrun the loader needs a batch_size (not a batch_sampler)")
    if even:
        shuffle = isinstance(loader.sampler, RandomSampler)
        sampler = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
    else:
        sampler = range(rank, len(dataset), num_replicas)
    return DataLoader(
        dataset, batch_size=loader.batch_size, sampler=sampler, collate_fn=loader.collate_fn, num_workers=loader.num_workers,
        drop_last=loader.drop_last, pin_memory=loader.pin_memory,
    )


def all_reduce_sums(totals: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Each value summed over the ranks (the keys must be the same on every rank)."""
    keys = sorted(totals)
    values = torch.tensor([float(totals[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return dict(zip(keys, values.tolist()))


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` from every rank, in rank order."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every rank."""
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
