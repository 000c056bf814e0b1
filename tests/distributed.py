"""Run a function on W gloo processes (CPU) and collect each rank's result — for distributed-equivalence tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world_size: int, workdir: str, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{workdir}/rendezvous", rank=rank, world_size=world_size)
    try:
        torch.save(fn(rank, world_size, *args), Path(workdir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_distributed(fn: Callable[..., Any], workdir: Path, *args: Any, world_size: int = 2, timeout: float | None = None) -> list[Any]:
    """``fn(rank, world_size, *args)`` on ``world_size`` processes; returns the per-rank results in rank order.
    ``fn`` must be a module-level function (it is pickled by name). After ``timeout`` seconds the processes are
    killed and TimeoutError raised: a rank stuck in a collective would otherwise hang the test run."""
    workdir.mkdir(parents=True, exist_ok=True)
    context = mp.spawn(_worker, args=(world_size, str(workdir), fn, args), nprocs=world_size, join=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    while not context.join(timeout=5):
        if deadline is not None and time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise TimeoutError(f"{fn.__name__} on {world_size} processes did not finish in {timeout} s (a rank hung?)")
    return [torch.load(workdir / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
