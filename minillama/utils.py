"""Small shared helpers: smoke mode, progress bars, thread and allocator settings, and the repository checkout."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm


def _flag(name: str, default: str = "0") -> bool:
    return os.environ.get(name, default).strip().lower() not in ("", "0", "false", "no", "off")


#: Smoke mode: notebooks and demos use tiny sizes so CI can execute them all in minutes (`MINILLAMA_SMOKE=1`).
SMOKE: bool = _flag("MINILLAMA_SMOKE")


def smoke(full, small):
    """`small` in smoke mode, else `full`: `steps = smoke(2000, 20)`."""
    return small if _flag("MINILLAMA_SMOKE") else full


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse: raise its mmap threshold (blocks below it come from the
    heap, not from a fresh `mmap` each time) and its trim threshold (free heap is not handed back to the OS).

    A training step frees and re-allocates the same large activation buffers every step. With glibc's defaults each
    comes back as new pages that the kernel must fault in and zero: a 15-minute `minillama pretrain` of the `small`
    preset took 190M minor page faults and spent 25% of its CPU time in the kernel. Measured on 2 cores: +20%
    tokens/s (4,850 -> 5,800). The price is that the process keeps its peak memory. Returns True where it applied
    (Linux with glibc); elsewhere (macOS, Windows, musl) it does nothing. The CLI commands and benchmarks call it;
    importing the library does not."""
    name = ctypes.util.find_library("c")
    if not name or "musl" in name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))


def progress_enabled() -> bool:
    """Progress bars are on unless `MINILLAMA_PROGRESS=0` or `CI` is set (tqdm's own TQDM_DISABLE is ignored
    inside notebooks, so the library decides)."""
    if "MINILLAMA_PROGRESS" in os.environ:
        return _flag("MINILLAMA_PROGRESS")
    return not _flag("CI")


def progress(iterable=None, **kwargs):
    """`tqdm.auto.tqdm` that respects `progress_enabled()`."""
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def physical_cores() -> int:
    """Physical cores this process may run on: the CPUs of `os.sched_getaffinity` (what a container or `taskset`
    allows), counting hyper-threads of one core once (Linux `/sys/.../topology/thread_siblings_list`); where that
    is not readable, the number of CPUs allowed (`os.cpu_count()` outside Linux)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        try:
            path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
            cores.add(path.read_text().strip())
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def resolve_threads(n: int | None = None) -> tuple[int, str]:
    """(torch threads, where the number came from). The first that is set wins: `n` (a `--threads` flag), the
    `MINILLAMA_THREADS` variable, `OMP_NUM_THREADS` (tests and CI set it to 1), else all physical cores
    (`physical_cores()`). Raises ValueError for a number below 1."""
    env = [(os.environ.get(name), name) for name in ("MINILLAMA_THREADS", "OMP_NUM_THREADS")]
    for value, source in [(n, "--threads"), *env]:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            threads = int(value)
        except ValueError:
            raise ValueError(f"{source}={value!r} is not a whole number of threads") from None
        if threads < 1:
            raise ValueError(f"{source} must be at least 1, got {threads}")
        return threads, source
    return physical_cores(), "all physical cores"


def set_threads(n: int | None = None) -> int:
    """Use `n` torch threads, else `MINILLAMA_THREADS`, else `OMP_NUM_THREADS`, else every physical core (see
    `resolve_threads`); returns the number. Raises ValueError for a number below 1.

    Idle OpenMP threads sleep instead of spinning: `minillama/__init__.py` sets `OMP_WAIT_POLICY=PASSIVE` when it is
    not set and torch is not imported yet (the OpenMP runtime reads it once, when torch loads), so a training run
    leaves the rest of a shared machine usable. Every command that computes calls this first, so it is also where
    the allocator is set for speed (`keep_freed_memory`)."""
    threads, _ = resolve_threads(n)
    torch.set_num_threads(threads)
    keep_freed_memory()
    return threads


def repo_root() -> Path:
    """The repository checkout this package was installed from (editable install)."""
    return Path(__file__).resolve().parent.parent


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` so a reader sees the old file or the whole new one, never a part: a temporary file
    in the same folder, flushed to disk, then renamed over `path`. Ordinary permissions (0666 less the umask)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private (0600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
