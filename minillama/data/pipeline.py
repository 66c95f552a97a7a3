"""The data pipeline (paper §3.1): a chain of steps, each of which says what it removed and why.

Llama 3's pre-training corpus is the output of a chain: text extraction and cleaning, URL/document/line-level
de-duplication, heuristic filters, model-based quality filters, then a data mix (§3.1.1-§3.1.2). Every step here is
a plain function or small class ``step(docs) -> (kept, StepReport)`` working on a list of `Document`; `Pipeline`
runs them in order and collects the reports, so a learner can see, per step, how many documents and bytes went and
read examples of what was removed.

Steps are deterministic: the same documents and seed give the same output, byte for byte.

>>> from minillama.data.corpus import Document
>>> docs = [Document("a b c d e f", "s", "1"), Document("a b c d e f", "s", "2")]
>>> kept, reports = Pipeline([("exact", exact_dedup_step)]).run(docs)
>>> [d.id for d in kept], reports[0].docs_removed
(['1'], 1)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from minillama.data.corpus import Document

__all__ = ["StepReport", "Pipeline", "default_pipeline", "format_reports", "plot_reports", "exact_dedup_step"]

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
            snippet = " ".join(doc.text[:SNIPPET_CHARS * 2].split())[:SNIPPET_CHARS]
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
            "name": self.name, "reason": self.reason, "docs_in": self.docs_in, "docs_out": self.docs_out,
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "seconds": round(self.seconds, 3),
            "removed": [list(r) for r in self.removed], "examples": self.examples, "details": self.details,
        }


Step = Callable[[Sequence[Document]], "tuple[list[Document], StepReport]"]


class Pipeline:
    """Run named steps in order: ``Pipeline([("clean", clean), ("exact", exact_dedup_step), ...]).run(docs)``.

    Each step is ``step(docs) -> (kept, StepReport)``; bind options with ``functools.partial`` or a lambda.
    `run` returns ``(kept, reports)`` with one report per step, named as given.
    """

    def __init__(self, steps: Sequence[tuple[str, Step]]):
        names = [name for name, _ in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique, got {names}")
        self.steps = list(steps)

    def run(self, docs: Sequence[Document], progress: bool = False) -> tuple[list[Document], list[StepReport]]:
        from minillama.utils import progress as bar

        reports = []
        kept = list(docs)
        steps = bar(self.steps, desc="data pipeline", disable=not progress) if progress else self.steps
        for name, step in steps:
            kept, report = step(kept)
            report.name = name
            reports.append(report)
        return kept, reports


def exact_dedup_step(docs: Sequence[Document]) -> tuple[list[Document], StepReport]:
    """Exact de-duplication by normalized hash (§3.1.1, document-level); see `minillama.data.dedup.exact_dedup`."""
    from minillama.data.dedup import exact_dedup

    return exact_dedup(docs)


def default_pipeline(
    seed: int = 0,
    near_dup_threshold: float = 0.8,
    line_max_repeats: int = 6,
    line_bucket_size: int = 1000,
    max_ngram_coverage: float = 0.8,
    max_dirty_ratio: float = 0.02,
    kl_outlier_k: float = 4.0,
    quality_threshold: float | None = 0.25,
    min_chars: int = 32,
) -> Pipeline:
    """The course's §3.1 chain with its defaults (every knob is an argument):

    clean -> exact dedup -> MinHash near-dup -> line dedup (prose) -> duplicated n-gram coverage -> dirty words ->
    token-distribution KL -> quality classifier (skipped when ``quality_threshold`` is None).
    """
    from functools import partial

    from minillama.data import dedup, filters
    from minillama.data.clean import clean

    steps: list[tuple[str, Step]] = [
        ("clean", partial(clean, min_chars=min_chars)),
        ("exact_dedup", dedup.exact_dedup),
        ("near_dedup", partial(dedup.near_dedup, threshold=near_dup_threshold, seed=seed + 1)),
        ("line_dedup", partial(dedup.line_dedup, max_repeats=line_max_repeats, bucket_size=line_bucket_size,
                               seed=seed)),
        ("ngram_coverage", partial(filters.ngram_coverage_filter, max_coverage=max_ngram_coverage)),
        ("dirty_words", partial(filters.dirty_word_filter, max_ratio=max_dirty_ratio)),
        ("token_kl", partial(filters.kl_filter, k=kl_outlier_k)),
    ]
    if quality_threshold is not None:
        from minillama.data.quality import quality_filter

        steps.append(("quality", partial(quality_filter, threshold=quality_threshold, seed=seed)))
    return Pipeline(steps)


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
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    names = [r.name for r in reports]
    removed = [r.docs_removed for r in reports]
    bars = ax.bar(names, removed, color="tab:red", alpha=0.75)
    for bar, r in zip(bars, reports):
        ax.annotate(f"{r.bytes_removed / 1e3:.0f} kB", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("documents removed")
    ax.set_title("What each step removed (label: bytes removed, incl. edits)")
    ax.tick_params(axis="x", rotation=30)
    return ax.figure
