"""Data parallelism across processes (accelerate / torchrun), as the trainer sees it.

A run's global batch of ``batch_size`` rollouts is split into ``micro_batches`` chunks, each
drawn with its own generator (its noise and its prompts), and each process takes a contiguous
share of the chunks, accumulating their gradients; the gradients are then averaged across the
processes (what DDP does, done once per step on the flat gradient, so that it works whatever
forward/backward pattern a method has). A run is therefore the same whatever the number of
processes: one process with ``micro_batches = 2`` gives the parameters two processes give.

:func:`data_parallel` picks :class:`SingleProcess` or, when launched with several processes
(``WORLD_SIZE > 1``: ``accelerate launch``, ``torchrun``), :class:`ProcessGroup` over the
process group that accelerate's ``PartialState`` sets up (NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

__all__ = ["SingleProcess", "ProcessGroup", "data_parallel"]


class SingleProcess:
    """One process: every collective is the identity."""

    rank, world_size, is_main = 0, 1, True

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def mean_(self, tensors: list[Tensor]) -> None:
        """Average ``tensors`` in place across processes."""

    def sum_(self, tensors: list[Tensor]) -> None:
        """Sum ``tensors`` in place across processes."""

    def broadcast_(self, tensors: list[Tensor]) -> None:
        """Copy rank 0's ``tensors`` to every process, in place."""

    def barrier(self) -> None:
        """Wait for every process."""


class ProcessGroup(SingleProcess):
    """The processes of one ``accelerate launch`` / ``torchrun`` job."""

    def __init__(self):
        from accelerate import PartialState

        # initialises torch.distributed from the launcher's environment; on CPUs (no CUDA, or
        # ACCELERATE_USE_CPU=1) it must be told, or it runs each process as a world of one
        cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in (
            "1", "true", "yes",
        )  # fmt: skip
        self.state = PartialState(cpu=cpu)
        self.rank, self.world_size = self.state.process_index, self.state.num_processes
        self.is_main = self.state.is_main_process

    @property
    def device(self) -> torch.device:
        return self.state.device

    def mean_(self, tensors: list[Tensor]) -> None:
        if not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def sum_(self, tensors: list[Tensor]) -> None:
        for t in tensors:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)

    def broadcast_(self, tensors: list[Tensor]) -> None:
        for t in tensors:
            torch.distributed.broadcast(t, src=0)

    def barrier(self) -> None:
        self.state.wait_for_everyone()


def data_parallel() -> SingleProcess:
    """:class:`ProcessGroup` when this process is one of several (``WORLD_SIZE > 1``), else
    :class:`SingleProcess`."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return ProcessGroup()
    return SingleProcess()
