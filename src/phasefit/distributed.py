"""Several processes (``torchrun`` / ``accelerate launch``): who writes, and results gathered over ranks.

Everything goes through accelerate's ``PartialState``, which reads the launcher's environment
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...) and sets up the ``torch.distributed`` process group
the trainers then use for DDP. Started plainly, there is one process and all of this is a no-op.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object

T = TypeVar("T")


def state() -> PartialState:
    """The process's place in the run (set up once; on a machine without CUDA, processes talk over gloo)."""
    return PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    return state().num_processes


def is_main_process() -> bool:
    return state().is_main_process


def wait_for_everyone() -> None:
    state().wait_for_everyone()


def close() -> None:
    """End the process group once the last collective is done: gloo's threads left running abort the interpreter at exit."""
    if torch.distributed.is_initialized():
        wait_for_everyone()
        state().destroy_process_group()  # accelerate's: leaves a notebook_launcher (forked) group alone


def all_ranks_agree(flag: bool) -> bool:
    """True only where every process says True (e.g. every node found a cached phase)."""
    if world_size() == 1:
        return flag
    return all(gather_object([bool(flag)]))


def map_sharded(function: Callable[[list[T]], Iterable], items: Sequence[T]) -> list:
    """``function`` over ``items`` with rows split round-robin over the processes; every process gets all results in order."""
    count = world_size()
    if count == 1:
        return list(function(list(items)))
    rank = state().process_index
    mine = list(function(list(items[rank::count])))
    parts = gather_object([mine])
    results: list = [None] * len(items)
    for index, part in enumerate(parts):
        results[index::count] = part
    return results


@contextmanager
def shared_temporary_directory(prefix: str) -> Iterator[Path]:
    """A scratch folder made by the main process, whose path every process uses (its checkpoints are read by all)."""
    if world_size() == 1:
        with tempfile.TemporaryDirectory(prefix=prefix) as folder:
            yield Path(folder)
        return
    path = [tempfile.mkdtemp(prefix=prefix) if is_main_process() else None]
    broadcast_object_list(path)
    try:
        yield Path(path[0])
    finally:
        wait_for_everyone()
        if is_main_process():
            shutil.rmtree(path[0], ignore_errors=True)


def average_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Average the gradients of parameters that DDP does not own (a loss's decoder) over the processes."""
    if world_size() == 1 or not parameters:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for parameter, grad in zip(parameters, grads):
        size = grad.numel()
        parameter.grad = flat[offset : offset + size].view_as(grad).clone()
        offset += size
