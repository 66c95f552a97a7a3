"""What a data step did (paper §3.1): `StepReport`, returned by every cleaning, de-duplication, filter, quality and
mix step beside the documents it kept, so a learner can see per step how many documents and bytes went and why.
`format_reports` prints them as a table; `plot_reports` draws documents and bytes kept after each step."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from minillama.data.corpus import Document

__all__ = ["StepReport", "format_reports", "plot_reports", "MAX_EXAMPLES", "SNIPPET_CHARS"]


#: How many removed documents a report keeps with a text snippet.
MAX_EXAMPLES = 5


SNIPPET_CHARS = 160


@dataclass
class StepReport:
    """What one step did.

    name, reason:       the step and the paper section / rule it applies.
    docs_in, bytes_in:  documents and UTF-8 bytes that came in; docs_out, bytes_out: what went on.
    removed:            ``(id, why)`` for every document removed.
    examples:           up to `MAX_EXAMPLES` removed documents as ``{"id", "why", "snippet"}``.
    details:            step-specific facts (thresholds, duplicate clusters, scores, lines removed ...).
    """

    name: str
    reason: str
    docs_in: int = 0
    bytes_in: int = 0
    docs_out: int = 0
    bytes_out: int = 0
    removed: list[tuple[str, str]] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    seconds: float = 0.0
    _t0: float = field(default=0.0, repr=False, compare=False)

    @classmethod
    def start(cls, name: str, reason: str, docs: Sequence[Document]) -> StepReport:
        return cls(name, reason, docs_in=len(docs), bytes_in=sum(d.bytes for d in docs), _t0=time.perf_counter())

    def remove(self, doc: Document, why: str) -> None:
        """Record that `doc` was removed, and why."""
        self.removed.append((doc.id, why))
        if len(self.examples) < MAX_EXAMPLES:
            snippet = " ".join(doc.text[: SNIPPET_CHARS * 2].split())[:SNIPPET_CHARS]
            self.examples.append({"id": doc.id, "why": why, "snippet": snippet})

    def finish(self, kept: Sequence[Document]) -> StepReport:
        self.docs_out = len(kept)
        self.bytes_out = sum(d.bytes for d in kept)
        self.seconds = time.perf_counter() - self._t0
        return self

    @property
    def docs_removed(self) -> int:
        return self.docs_in - self.docs_out

    @property
    def bytes_removed(self) -> int:
        """Bytes removed, by dropping documents or by editing them (cleaning, line dedup)."""
        return self.bytes_in - self.bytes_out

    def to_dict(self) -> dict:
        """JSON-ready view (for ``report.json``)."""
        return {
            "name": self.name,
            "reason": self.reason,
            "docs_in": self.docs_in,
            "docs_out": self.docs_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 3),
            "removed": [list(r) for r in self.removed],
            "examples": self.examples,
            "details": self.details,
        }


def format_reports(reports: Sequence[StepReport]) -> str:
    """A plain-text table: one row per step with documents and bytes in/removed/out, and the reason."""
    head = f"{'step':<16}{'docs in':>9}{'removed':>9}{'docs out':>10}{'MB in':>9}{'MB removed':>12}{'sec':>7}  reason"
    rows = [head, "-" * len(head)]
    for r in reports:
        rows.append(
            f"{r.name:<16}{r.docs_in:>9}{r.docs_removed:>9}{r.docs_out:>10}{r.bytes_in / 1e6:>9.2f}"
            f"{r.bytes_removed / 1e6:>12.3f}{r.seconds:>7.2f}  {r.reason}"
        )
    return "\n".join(rows)


def plot_reports(reports: Sequence[StepReport], ax=None):
    """Bar chart of what each step removed: documents (bars) and megabytes (labels). Returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    names = [r.name for r in reports]
    removed = [r.docs_removed for r in reports]
    bars = ax.bar(names, removed, color="tab:red", alpha=0.75)
    for bar, r in zip(bars, reports):
        ax.annotate(
            f"{r.bytes_removed / 1e3:.0f} kB",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("documents removed")
    ax.set_title("What each step removed (label: bytes removed, incl. edits)")
    ax.tick_params(axis="x", rotation=30)
    return ax.figure
