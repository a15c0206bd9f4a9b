"""Data-parallel training over ``torch.distributed``: process group, sharded batches, gradient sums.

A run is distributed when ``torchrun`` (or :func:`llseg.methods.launch.learn_on_devices`) sets
``WORLD_SIZE`` > 1. Every rank holds the whole model and the same data list; each optimiser step
consumes one *global* batch of ``batch_size`` samples (the config's value, whatever the world size),
split into ``world_size × accumulate`` contiguous micro-batches. Each rank back-propagates its
micro-batches with weights ``len(micro) / len(global)``, then the gradients are summed over the ranks
(one all-reduce per step), so the update equals one process at ``batch_size`` for losses that are
means over samples. Per-sample augmentation seeds are ``(seed, epoch, index)``
(:class:`llseg.data.dataset.SegmentationPairs`): independent of the world size.
"""
from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from llseg.errors import ConfigError

log = logging.getLogger("llseg.distributed")
TIMEOUT_ENV = "LLSEG_DIST_TIMEOUT"  # seconds a collective may wait for a peer before the run fails


def env_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and without distribution): the only rank that writes files and logs INFO."""
    return rank() == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1; once per process) and return
    this rank's device: ``cuda:LOCAL_RANK`` when ``device`` is CUDA, else ``device``.

    Backend: NCCL on CUDA, gloo on CPU. Collectives time out after ``$LLSEG_DIST_TIMEOUT`` seconds
    (default 600), so a rank that dies makes the others fail instead of hanging.
    """
    if env_world_size() <= 1:
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s) on this node; "
                              "start at most that many processes per node (torchrun --nproc_per_node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timeout)
        log.info("rank %d of %d joined (%s, %s)", dist.get_rank(), dist.get_world_size(), backend, device)
    return device


def shutdown() -> None:
    """Leave the process group (end of a distributed command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's micro-batches (index lists) of seeded global batches.

    Each epoch draws ``torch.randperm(n, generator)`` from ``generator`` (as a shuffling
    ``DataLoader`` with that generator does), cuts it into global batches of ``batch_size`` (a last
    batch smaller than ``world × accumulate × min_part`` samples, or of one sample, is dropped),
    splits every global batch into ``world × accumulate`` near-equal contiguous parts and yields parts
    ``rank·accumulate … rank·accumulate + accumulate − 1``. ``min_part``: the fewest samples a
    micro-batch may have (2 for BatchNorm after global pooling, :func:`llseg.methods.engine.pooled_batchnorm`).
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, *, accumulate: int = 1,
                 rank: int = 0, world: int = 1, min_part: int = 1) -> None:
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self.accumulate, self.rank, self.world, self.min_part = accumulate, rank, world, min_part
        parts = world * accumulate
        if min_part > 1 and self.batch_size < parts * min_part:
            raise ConfigError(
                f"batch_size {batch_size} (on {n} images) split into {world} process(es) × accumulate {accumulate} gives "
                f"micro-batches of fewer than {min_part} samples, and the model's BatchNorm after global pooling (DeepLabV3's "
                f"ASPP image pooling) needs {min_part} per micro-batch in training: set batch_size >= {parts * min_part}, "
                "lower accumulate or the number of processes, or set sync_bn: true (CUDA, several processes)")
        if self.batch_size < parts:
            raise ConfigError(f"batch_size {batch_size} (on {n} images) cannot be split into {world} process(es) × "
                              f"accumulate {accumulate} micro-batches; raise batch_size or lower accumulate / the processes")

    def global_sizes(self) -> list[int]:
        """Sizes of the global batches of one epoch (the optimiser steps)."""
        full, rest = divmod(self.n, self.batch_size)
        keep_rest = rest >= max(2, self.world * self.accumulate * self.min_part)
        return [self.batch_size] * full + ([rest] if keep_rest else [])

    def __len__(self) -> int:
        return len(self.global_sizes()) * self.accumulate

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self.generator).tolist()
        start = 0
        for size in self.global_sizes():
            parts = np.array_split(np.arange(start, start + size), self.world * self.accumulate)
            for part in parts[self.rank * self.accumulate:(self.rank + 1) * self.accumulate]:
                yield [order[i] for i in part]
            start += size
        # a shuffling DataLoader's RandomSampler draws one more permutation when exhausted: so do we,
        # so that later epochs' orders stay those of one process
        torch.randperm(self.n, generator=self.generator)


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical start whatever each rank drew)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def sum_gradients(params: Sequence[nn.Parameter], extra: torch.Tensor) -> torch.Tensor:
    """All-reduce (sum) the gradients of ``params`` that have one, and ``extra`` (a 1-D float tensor,
    e.g. the step's weighted loss), in one flat buffer; returns the summed ``extra``."""
    if not is_distributed():
        return extra
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([*(g.reshape(-1).float() for g in grads), extra.float().to(grads[0].device if grads else extra.device)])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return flat[offset:].to(extra.device)


def average_buffers(module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks."""
    if not is_distributed():
        return
    with torch.no_grad():
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(dist.get_world_size())


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """``array`` summed over the ranks (int64/float64 counts such as confusion matrices)."""
    if not is_distributed():
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def all_gather_objects(value: object) -> list[object]:
    """``value`` of every rank, in rank order."""
    if not is_distributed():
        return [value]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out
