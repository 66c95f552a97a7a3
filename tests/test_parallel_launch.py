"""The CPU launcher (minillama.parallel.launch): results by rank, errors that name the failed rank, timeouts,
isolated rendezvous for concurrent runs, and the torchrun path."""

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
import torch
import torch.distributed as dist

from minillama.parallel.launch import WorkerError, launch


def _sum_of_ranks(tag):
    t = torch.tensor([float(dist.get_rank())], dtype=torch.float64)
    dist.all_reduce(t)
    return tag, dist.get_rank(), dist.get_world_size(), t.item(), torch.get_num_threads()


def _rank1_raises():
    if dist.get_rank() == 1:
        raise ValueError("boom from rank one")
    dist.barrier()


def _rank2_dies_silently():
    if dist.get_rank() == 2:
        os._exit(3)
    dist.barrier()


def _rank0_waits_alone():
    if dist.get_rank() == 0:
        dist.barrier()  # the others never join: must fail after the collective timeout, not 30 minutes
    else:
        time.sleep(20)


def _unpicklable_result():
    return lambda: None


def _rank1_exits_quietly():
    if dist.get_rank() == 1:
        os._exit(0)
    return 1


def test_unpicklable_result_and_quiet_exit_are_errors():
    """A result that cannot be pickled, or a rank that leaves with exit code 0 without returning, is an error
    naming the rank (the launcher must not wait forever for its message)."""
    with pytest.raises(WorkerError, match="pickle"):
        launch(_unpicklable_result, 2)
    with pytest.raises(WorkerError, match="without returning a result") as err:
        launch(_rank1_exits_quietly, 2)
    assert err.value.rank == 1


def test_results_come_back_by_rank_with_one_thread_each():
    """Each rank runs fn(*args); the list is ordered by rank; the all-reduce sums 0+1+2; one torch thread per rank."""
    out = launch(_sum_of_ranks, 3, "x")
    assert out == [("x", r, 3, 3.0, 1) for r in range(3)]


def test_exception_names_the_failed_rank_and_its_traceback():
    """An exception on rank 1 ends the job with WorkerError(rank=1) carrying rank 1's traceback, not a hang."""
    t0 = time.perf_counter()
    with pytest.raises(WorkerError) as err:
        launch(_rank1_raises, 3)
    assert err.value.rank == 1 and "boom from rank one" in str(err.value)
    assert time.perf_counter() - t0 < 15


def test_silent_death_is_reported():
    """A rank that dies without a Python traceback (exit code 3) is named with its exit code."""
    with pytest.raises(WorkerError) as err:
        launch(_rank2_dies_silently, 3)
    assert err.value.rank == 2 and "exit code 3" in str(err.value)


def test_missing_collective_times_out():
    """A collective nobody else joins fails after `timeout` seconds (here 2), naming rank 0."""
    t0 = time.perf_counter()
    with pytest.raises(WorkerError) as err:
        launch(_rank0_waits_alone, 2, timeout=2)
    assert err.value.rank == 0
    assert time.perf_counter() - t0 < 15


def test_concurrent_launches_never_meet():
    """Two jobs started at the same time each sum only their own ranks (a shared TCP port would mix them)."""
    results = {}

    def run(tag):
        results[tag] = launch(_sum_of_ranks, 2, tag)

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for tag in ("a", "b"):
        assert [r[0] for r in results[tag]] == [tag, tag] and [r[3] for r in results[tag]] == [1.0, 1.0]


def test_invalid_world_size():
    """world_size 0 is refused with a ValueError."""
    with pytest.raises(ValueError, match="world_size"):
        launch(_sum_of_ranks, 0, "x")


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_same_command_runs_under_torchrun():
    """Under torchrun (RANK/WORLD_SIZE set) launch runs fn in place and all-gathers the results: the 4D check
    `torchrun --nproc-per-node 2 -m minillama parallel-check --tp 2` passes, and only rank 0 prints."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "minillama",
            "parallel-check",
            "--tp",
            "2",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("max |difference| vs one device") == 1 and ": OK" in proc.stdout
