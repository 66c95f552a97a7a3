"""Count what a rank sends: a context manager that wraps the `torch.distributed` collectives (for benchmarks).

    with count_bytes() as sent:
        run.step(tokens)
    sent.bytes["all_reduce"], sent.calls["all_reduce"], sent.total

Bytes are what this rank puts on the wire with the usual ring algorithms, for a group of n ranks:
    all_reduce        2·(n−1)/n · size     (a reduce-scatter, then an all-gather)
    all_gather        (n−1) · size of this rank's piece
    reduce_scatter    (n−1) · size of this rank's piece of the result
    broadcast         size on the source, 0 elsewhere
    send / isend      size (receives count 0: the sender counted them)
The patch replaces the functions of the `torch.distributed` module while the block runs, so every module that
calls `dist.<name>(...)` is counted, ours and the pipeline's alike.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

import torch.distributed as dist


def _n(kwargs) -> int:
    return dist.get_world_size(kwargs.get("group"))


def _nbytes(t) -> int:
    return t.numel() * t.element_size()


def _is_source(args, kwargs) -> bool:
    if "group_src" in kwargs:
        return dist.get_rank(kwargs.get("group")) == kwargs["group_src"]
    return dist.get_rank() == kwargs.get("src", args[1] if len(args) > 1 else None)


# name -> (position of the tensor argument whose size counts, bytes for a group of n ranks and that size)
_RULES = {
    "all_reduce": (0, lambda n, b, a, kw: 2 * (n - 1) * b // n),
    "all_gather": (1, lambda n, b, a, kw: (n - 1) * b),
    "all_gather_into_tensor": (1, lambda n, b, a, kw: (n - 1) * b),
    "reduce_scatter": (0, lambda n, b, a, kw: (n - 1) * b),
    "reduce_scatter_tensor": (0, lambda n, b, a, kw: (n - 1) * b),
    "broadcast": (0, lambda n, b, a, kw: b if _is_source(a, kw) else 0),
    "send": (0, lambda n, b, a, kw: b),
    "isend": (0, lambda n, b, a, kw: b),
}


@dataclass
class Sent:
    """Bytes and calls per collective name, for this rank."""

    bytes: Counter = field(default_factory=Counter)
    calls: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.bytes.values())


@contextlib.contextmanager
def count_bytes():
    """Patch the collectives of `torch.distributed` to count bytes and calls; yields a `Sent`."""
    sent = Sent()
    originals = {name: getattr(dist, name) for name in _RULES}

    def wrap(name, fn):
        position, rule = _RULES[name]

        def counted(*args, **kwargs):
            tensor = args[position] if len(args) > position else kwargs.get("tensor")
            sent.bytes[name] += rule(_n(kwargs), _nbytes(tensor), args, kwargs)
            sent.calls[name] += 1
            return fn(*args, **kwargs)

        return counted

    try:
        for name, fn in originals.items():
            setattr(dist, name, wrap(name, fn))
        yield sent
    finally:
        for name, fn in originals.items():
            setattr(dist, name, fn)
