"""Data parallelism for the aligner on torch.distributed, as ``torchrun`` / ``accelerate launch`` start it.

Every process runs the same seeded search (same optimiser, same asks); only the scoring of a
generation is split: the scorer forms its shares of work (``TaskScorer.units``: a stem pass with its
forward batches, or one batch) as one process would, each process runs every N-th share and the
log-likelihoods are gathered back, so every process tells
its optimiser the same numbers and the search is the one a single process makes. One process (rank 0) writes. Without ``WORLD_SIZE`` > 1
in the environment nothing here touches torch.distributed.
"""

from __future__ import annotations

import atexit
import functools
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from culture_tasks.outputs import launch_number, launched_world_size


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` described in the environment (``env://``).

    gloo on CPU, nccl when CUDA is there (each process on the GPU of its LOCAL_RANK). Returns
    whether this run is distributed. Reuses a group another library (accelerate) already made."""
    if launched_world_size() <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run one process")
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(launch_number("LOCAL_RANK", 0))
        dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://")
        atexit.register(_shutdown)  # a gloo group left to interpreter teardown can abort the process
    return True


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if _active() and world_size() > 1:
        dist.barrier()


def share(n: int, world: int, index: int) -> range:
    """The items of process ``index`` of ``world``: every ``world``-th one from ``index`` (7 over 2:
    0, 2, 4, 6 and 1, 3, 5). Dealt round-robin, so a list sorted longest first gives every process
    a like amount of work."""
    return range(index, n, world)


def map_shared(fn: Callable, items: Sequence) -> list:
    """``[fn(x) for x in items]``, computed by all processes together: each process applies ``fn``
    to its ``share`` of the items and the results are gathered back in item order.

    Every item is computed exactly as one process would compute it (the aligner's items are whole
    forward batches, formed before the split), so the results do not depend on the process count.
    A collective call: every process must make it, with the same items."""
    world = world_size()
    if world == 1:
        return [fn(x) for x in items]
    mine = share(len(items), world, rank())
    local = [fn(items[k]) for k in mine]
    gathered: list[list | None] = [None] * world
    dist.all_gather_object(gathered, local)
    out: list = [None] * len(items)
    for index, part in enumerate(gathered):
        for k, value in zip(share(len(items), world, index), part):
            out[k] = value
    return out


def from_main(obj):
    """Rank 0's ``obj`` on every process (a collective call): what the main process read from its
    disk, which the others may not share (nodes without a common filesystem)."""
    if world_size() == 1:
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main_process_only(fn: Callable) -> Callable:
    """Run ``fn`` on rank 0 only (file writes); other processes get None."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) if is_main() else None

    return wrapper
