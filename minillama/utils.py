"""Small shared helpers: smoke mode, progress bars, thread settings, and the repository checkout."""

from __future__ import annotations

import contextlib
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


def set_threads(n: int | None = None) -> int:
    """Use `n` torch threads (default: `MINILLAMA_THREADS`, else 1). One thread is steady on a shared 2-core box."""
    n = n or int(os.environ.get("MINILLAMA_THREADS", "1"))
    torch.set_num_threads(n)
    return n


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
