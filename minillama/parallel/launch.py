"""Start N simulated devices on one CPU (gloo), or join a real job started by `torchrun` (NCCL on GPUs).

    results = launch(fn, 4, x, y=1)   # runs fn(x, y=1) in 4 processes; returns [result of rank 0, ..., rank 3]

Inside `fn`, `torch.distributed` is initialised: `dist.get_rank()`, `dist.get_world_size()`, collectives, and
`device()` gives the tensor device of this rank (cpu under gloo, cuda:LOCAL_RANK under NCCL).

On a CPU (no RANK/WORLD_SIZE in the environment) the launcher
- starts `world_size` worker processes with the `forkserver` start method (torch is imported once, in the server,
  so each worker starts in a fraction of a second instead of seconds with `spawn`);
- rendezvous through a `file://` store in a fresh temporary folder: two test runs at once can never meet (picking
  a TCP port is racy, and two jobs on one port silently sum each other's tensors, PARALLEL_NOTES.md);
- pins each rank to one torch thread (with two threads per rank on two cores, steps were 200x slower);
- passes a collective timeout (default 60 s, not torch's 30 minutes), so a missing collective fails fast;
- polls the children: at the first death (an exception, or a gloo abort after a mismatched collective) it ends
  the others and raises `WorkerError` naming the rank and its traceback, instead of hanging.

Under `torchrun` (RANK and WORLD_SIZE set) it just initialises the default group (NCCL if CUDA is available, else
gloo), runs `fn` in this process and all-gathers the return values, so a script written for the CPU runs unchanged
on a cluster: `torchrun --nproc-per-node 8 my_script.py`.

`fn` and its arguments must be picklable: a function defined at module level in an importable module (a function
defined in a notebook cell lives in `__main__`, which the workers cannot import; for those the launcher falls
back to the `fork` start method). Return values travel back pickled; return small CPU tensors or numbers.

Paper: §3.3.2 (4D parallelism on 16K GPUs); here the "GPUs" are processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

#: Imported once in the fork server, so workers start with them loaded. torch._dynamo is pulled in by the first
#: `torch.optim` optimizer and takes seconds to import: paying that once instead of once per rank matters.
PRELOAD = ["torch", "torch.distributed", "torch._dynamo", "minillama.model", "minillama.parallel.launch"]


class WorkerError(RuntimeError):
    """A worker process failed; the message names the rank and carries its traceback."""

    def __init__(self, rank: int, detail: str):
        super().__init__(f"rank {rank} failed:\n{detail}")
        self.rank = rank


def under_torchrun() -> bool:
    """True when started by `torchrun` (or any launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def device() -> torch.device:
    """The device this rank computes on: `cuda:LOCAL_RANK` under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def launch(
    fn: Callable[..., Any], world_size: int, *args, timeout: float = 60, start_method: str | None = None, **kwargs
) -> list[Any]:
    """Run `fn(*args, **kwargs)` on `world_size` ranks; return the list of their return values, by rank.

    timeout: seconds a collective may wait before it fails (gloo/NCCL), and the grace period for start-up.
    start_method: "forkserver" (default on Linux), "spawn", or "fork" (default when `fn` lives in `__main__`).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if under_torchrun():
        return _run_under_torchrun(fn, world_size, args, kwargs, timeout)
    if start_method is None:
        start_method = "fork" if getattr(fn, "__module__", None) == "__main__" else "forkserver"
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)
    folder = tempfile.mkdtemp(prefix="minillama-rdzv-")
    store = os.path.join(folder, "store")  # FileStore needs a file that does not exist yet
    results: queue.Queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            name=f"minillama-rank{rank}",
            daemon=True,
            args=(fn, rank, world_size, store, timeout, args, kwargs, results),
        )
        for rank in range(world_size)
    ]
    try:
        for p in procs:
            p.start()
        return _collect(procs, results, world_size)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():  # ignored SIGTERM (stuck in C code): kill it
                p.kill()
                p.join()
        results.close()
        shutil.rmtree(folder, ignore_errors=True)


def _collect(procs: list, results, world_size: int) -> list[Any]:
    """Wait for every rank's message, polling the processes; raise at the first failure."""
    out: dict[int, Any] = {}
    while len(out) < world_size:
        try:
            rank, when, ok, payload = results.get(timeout=0.05)
        except queue.Empty:
            dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in out]
            if not dead:  # fn called os._exit(0): it will never report
                dead = [r for r, p in enumerate(procs) if p.exitcode == 0 and r not in out]
            if dead:  # died without a message (e.g. gloo abort): give its last words a moment to arrive
                try:
                    rank, when, ok, payload = results.get(timeout=1.0)
                except queue.Empty:
                    raise WorkerError(dead[0], _silent_death(procs[dead[0]].exitcode)) from None
            else:
                continue
        if not ok:
            raise WorkerError(*_first_failure(procs, results, (when, rank, payload), set(out)))
        out[rank] = pickle.loads(payload)
    return [out[r] for r in range(world_size)]


def _first_failure(procs: list, results, first: tuple[float, int, str], returned: set[int]) -> tuple[int, str]:
    """The root cause: when one rank fails, its peers fail next ("connection closed"). A rank that died without
    a traceback (gloo abort, os._exit, out of memory, or exit code 0 with no result) is the likely cause; otherwise
    keep the earliest error. `returned`: the ranks whose results already arrived."""
    failures = [first]
    deadline = time.time() + 0.5
    while time.time() < deadline:
        try:
            rank, when, ok, payload = results.get(timeout=0.05)
        except queue.Empty:
            continue
        if ok:
            returned.add(rank)
        else:
            failures.append((when, rank, payload))
    when, rank, payload = min(failures)
    reported = {r for _, r, _ in failures} | returned
    silent = [r for r, p in enumerate(procs) if p.exitcode not in (None, 1) and r not in reported]
    if silent:
        return silent[0], f"{_silent_death(procs[silent[0]].exitcode)}\nthen rank {rank} failed:\n{payload}"
    return rank, payload


def _silent_death(code: int) -> str:
    if code == 0:
        return "process exited (code 0) without returning a result (os._exit inside fn?)"
    why = f"signal {-code}" if code < 0 else f"exit code {code}"
    return (
        f"process died ({why}) without a Python traceback; a mismatched collective aborts gloo: rerun with "
        "TORCH_DISTRIBUTED_DEBUG=DETAIL"
    )


def _worker(fn, rank: int, world_size: int, store: str, timeout: float, args, kwargs, results) -> None:
    """Body of one worker process: one thread, join the group, run fn, report the result or the traceback."""
    os.environ.update(OMP_NUM_THREADS="1", RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout)
        )
        value = pickle.dumps(fn(*args, **kwargs))  # an unpicklable result fails here, with its traceback
    except BaseException:  # noqa: BLE001 - report before the group closes, so the others' errors come later
        results.put((rank, time.time(), False, traceback.format_exc()))
        results.close()
        results.join_thread()
        os._exit(1)
    dist.destroy_process_group()
    results.put((rank, time.time(), True, value))


def _run_under_torchrun(fn, world_size: int, args, kwargs, timeout: float) -> list[Any]:
    """torchrun mode: this process is one rank; initialise, run, and gather everybody's return value."""
    if int(os.environ["WORLD_SIZE"]) != world_size:
        raise ValueError(
            f"launch(..., world_size={world_size}) but torchrun started WORLD_SIZE="
            f"{os.environ['WORLD_SIZE']} processes: pass --nproc-per-node accordingly"
        )
    created = not dist.is_initialized()
    if created:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    try:
        value = fn(*args, **kwargs)
        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, value)
        return gathered
    finally:
        if created:
            dist.destroy_process_group()
