"""Cleaning (paper §3.1.1 "PII and safety filtering" / "Text extraction and cleaning").

Llama 3 extracts text from HTML with a custom parser and **removes markdown markers**, because training on markdown
hurt performance on their evaluations; it keeps image alt text (where maths often lives). Our corpus has no HTML,
so cleaning here is:

* `normalize_text` (every document): one newline convention, no trailing whitespace, no control characters or byte
  order mark, Unicode NFC, at most two blank lines in a row. Indentation is kept (it is Python's syntax).
* `strip_markup` (prose only): markdown markers (``# `` headings, ``**bold**``, ``_em_``, backticks, code fences,
  ``[text](url)`` links, ``![alt](src)`` images -> alt text) and the reStructuredText decoration that pydoc's
  topics carry (``*****`` / ``=====`` heading underlines, ``+----+`` table borders, ``-[ Footnotes ]-``).
  Code is never stripped: ``#`` starts a comment there and ``*`` is an operator.
* `clean`: the pipeline step. It applies both, drops documents left shorter than ``min_chars``, and reports what it
  changed: documents dropped (with examples) and bytes removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from minillama.data.corpus import Document
from minillama.data.report import StepReport

__all__ = ["normalize_text", "strip_markup", "clean_document", "clean"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MANY_BLANKS = re.compile(r"\n{4,}")
# Markdown
_FENCE = re.compile(r"^\s*(```|~~~).*$", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s+", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPH = re.compile(r"(?<![\w*])([*_])(?=\S)([^*_\n]+?)(?<=\S)\1(?![\w*])")
_CODE = re.compile(r"`([^`\n]+)`")
_QUOTE = re.compile(r"^>\s?", re.MULTILINE)
# reStructuredText decoration used by pydoc_data
_UNDERLINE = re.compile(r"^\s*([*=\-~^#+])\1{2,}\s*$", re.MULTILINE)
_TABLE_BORDER = re.compile(r"^\s*\+[-=+]+\+\s*$", re.MULTILINE)
_RUBRIC = re.compile(r"^-\[ (.+?) \]-$", re.MULTILINE)


def normalize_text(text: str) -> str:
    """Whitespace and encoding normalization that is safe for code and prose alike (indentation kept)."""
    text = unicodedata.normalize("NFC", text.lstrip("\ufeff"))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _MANY_BLANKS.sub("\n\n\n", text)
    return text.strip("\n") + "\n" if text.strip() else ""


def strip_markup(text: str) -> str:
    """Remove markdown markers and reST decoration from prose, keeping the words (and image alt text)."""
    text = _FENCE.sub("", text)
    text = _UNDERLINE.sub("", text)
    text = _TABLE_BORDER.sub("", text)
    text = _RUBRIC.sub(r"\1", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _BOLD.sub(r"\2", text)
    text = _EMPH.sub(r"\2", text)
    text = _CODE.sub(r"\1", text)
    return text


def clean_document(doc: Document) -> Document:
    """`normalize_text`, plus `strip_markup` when the document is prose."""
    text = strip_markup(doc.text) if doc.kind == "prose" else doc.text
    return doc.with_text(normalize_text(text))


def clean(docs: Sequence[Document], min_chars: int = 1) -> tuple[list[Document], StepReport]:
    """Pipeline step: clean every document; drop those with fewer than `min_chars` non-space characters left.

    Returns (kept, report); the report counts documents changed and dropped and the bytes removed.
    """
    report = StepReport.start("clean", "§3.1.1: normalize text, remove markdown markers from prose", docs)
    kept, changed = [], 0
    for doc in docs:
        new = clean_document(doc)
        changed += new.text != doc.text
        if len("".join(new.text.split())) < min_chars:
            report.remove(doc, f"fewer than {min_chars} characters after cleaning")
            continue
        kept.append(new)
    report.details["documents_changed"] = changed
    return kept, report.finish(kept)
