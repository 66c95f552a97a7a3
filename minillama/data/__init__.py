"""The data diet (paper §3.1): a corpus with provenance, cleaning, de-duplication, heuristic and model-based
filters, and a data mix. Each step takes a list of `Document` and returns ``(kept, report)``."""

from minillama.data.corpus import (
    Document,
    corpus_summary,
    load_corpus,
    load_documents,
    load_text_files,
    save_documents,
    stdlib_corpus,
    train_val_split,
)

__all__ = [
    "Document",
    "stdlib_corpus",
    "load_text_files",
    "load_corpus",
    "save_documents",
    "load_documents",
    "corpus_summary",
    "train_val_split",
]
