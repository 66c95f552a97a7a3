"""The data pipeline (paper §3.1): a chain of steps, each of which says what it removed and why.

Llama 3's pre-training corpus is the output of a chain: text extraction and cleaning, URL/document/line-level
de-duplication, heuristic filters, model-based quality filters, then a data mix (paper §3.1.1-§3.1.2). Every step
here is a plain function or small class ``step(docs) -> (kept, StepReport)`` working on a list of `Document`; `Pipeline`
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

from collections.abc import Callable, Sequence
from functools import partial

from minillama.data import dedup, filters
from minillama.data.clean import clean
from minillama.data.corpus import Document
from minillama.data.dedup import exact_dedup
from minillama.data.quality import quality_filter
from minillama.data.report import StepReport
from minillama.utils import progress as bar

__all__ = ["Pipeline", "default_pipeline", "exact_dedup_step"]


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
        reports = []
        kept = list(docs)
        steps = bar(self.steps, desc="data pipeline", disable=not progress) if progress else self.steps
        for name, step in steps:
            kept, report = step(kept)
            report.name = name
            reports.append(report)
        return kept, reports


def exact_dedup_step(docs: Sequence[Document]) -> tuple[list[Document], StepReport]:
    """Exact de-duplication by normalized hash (paper §3.1.1, document-level): `minillama.data.dedup.exact_dedup`."""
    return exact_dedup(docs)


def default_pipeline(
    seed: int = 0,
    near_dup_threshold: float = 0.8,
    line_max_repeats: int = 6,
    line_bucket_size: int = 1000,
    max_ngram_coverage: float = 0.8,
    max_dirty_ratio: float = 0.02,
    kl_outlier_k: float = 4.0,
    max_table_share: float = 0.5,
    quality_threshold: float | None = 0.25,
    min_chars: int = 32,
) -> Pipeline:
    """The course's §3.1 chain with its defaults (every knob is an argument):

    clean -> exact dedup -> MinHash near-dup -> line dedup (prose) -> duplicated n-gram coverage -> dirty words ->
    token-distribution KL -> data-literal tables -> quality classifier (skipped when ``quality_threshold`` is None).
    """
    steps: list[tuple[str, Step]] = [
        ("clean", partial(clean, min_chars=min_chars)),
        ("exact_dedup", dedup.exact_dedup),
        ("near_dedup", partial(dedup.near_dedup, threshold=near_dup_threshold, seed=seed + 1)),
        (
            "line_dedup",
            partial(dedup.line_dedup, max_repeats=line_max_repeats, bucket_size=line_bucket_size, seed=seed),
        ),
        ("ngram_coverage", partial(filters.ngram_coverage_filter, max_coverage=max_ngram_coverage)),
        ("dirty_words", partial(filters.dirty_word_filter, max_ratio=max_dirty_ratio)),
        ("token_kl", partial(filters.kl_filter, k=kl_outlier_k)),
        ("tables", partial(filters.table_filter, max_share=max_table_share)),
    ]
    if quality_threshold is not None:
        steps.append(("quality", partial(quality_filter, threshold=quality_threshold, seed=seed)))
    return Pipeline(steps)
