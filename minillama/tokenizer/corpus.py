"""Offline corpora for training tokenizers: the Python standard library's own source (code, docstrings, comments)
and its `pydoc_data` documentation, read from the running interpreter's installation, in a fixed order."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def stdlib_files() -> list[Path]:
    """The standard library's `.py` files (tests excluded), sorted, so every run sees the same corpus."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        files.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    return files


def stdlib_text(max_bytes: int | None = None) -> str:
    """The standard library's source as one string, cut to at most `max_bytes` UTF-8 bytes (on file boundaries
    where possible): `stdlib_text(10_000_000)` is the 10 MB training corpus of the benchmark."""
    parts, total = [], 0
    for path in stdlib_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        size = len(text.encode("utf-8"))
        if max_bytes is not None and total + size > max_bytes:
            rest = text.encode("utf-8")[: max_bytes - total].decode("utf-8", errors="ignore")
            parts.append(rest)
            break
        parts.append(text)
        total += size
    return "".join(parts)


def pydoc_text() -> str:
    """The Python documentation topics shipped with the interpreter (`pydoc_data.topics`): English prose."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))
