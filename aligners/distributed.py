"""Data parallelism for the aligner on torch.distributed, as ``torchrun`` / ``accelerate launch`` start it.

Every process runs the same seeded search (same optimiser, same asks); only the scoring of a
generation's candidates is split: each process scores a contiguous share and the losses are
gathered back in candidate order, so every process tells its optimiser the same numbers and the
search is the one a single process makes. One process (rank 0) writes. Without ``WORLD_SIZE`` > 1
in the environment nothing here touches torch.distributed.
"""

from __future__ import annotations

import atexit
import functools
import os
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist


def _env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` described in the environment (``env://``).

    gloo on CPU, nccl when CUDA is there (each process on the GPU of its LOCAL_RANK). Returns
    whether this run is distributed. Reuses a group another library (accelerate) already made."""
    if _env_world_size() <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run one process")
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
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


def shard(n: int, world: int, index: int) -> range:
    """Contiguous share of ``n`` items for process ``index`` of ``world``: the first ``n % world``
    processes take one more (7 over 2: 0-3 and 4-6)."""
    base, extra = divmod(n, world)
    start = index * base + min(index, extra)
    return range(start, start + base + (1 if index < extra else 0))


def score_population(score_fn: Callable[[Sequence], Sequence[float]], prompts) -> list[float]:
    """``score_fn(prompts)``, computed by all processes together.

    Each process calls ``score_fn`` on its contiguous slice of ``prompts`` (never an empty one)
    and the results are gathered in candidate order. A candidate's score depends only on its own
    prompt (the scorer's rows are independent), so this equals one process's ``score_fn(prompts)``."""
    world = world_size()
    if world == 1:
        return [float(v) for v in score_fn(prompts)]
    share = shard(len(prompts), world, rank())
    local = [float(v) for v in score_fn(prompts[share.start:share.stop])] if len(share) else []
    if len(local) != len(share):
        raise RuntimeError(f"score_fn returned {len(local)} scores for {len(share)} candidates")
    gathered: list[list[float] | None] = [None] * world
    dist.all_gather_object(gathered, local)
    return [v for part in gathered for v in part]


def main_process_only(fn: Callable) -> Callable:
    """Run ``fn`` on rank 0 only (file writes); other processes get None."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) if is_main() else None

    return wrapper
