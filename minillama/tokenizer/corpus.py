"""Offline corpora for training and measuring tokenizers (paper §3.2 measures compression on English and
multilingual text; we use what every machine has): the Python standard library's own source (code, docstrings,
comments), its `pydoc_data` documentation, and the system's translated messages, read in a fixed order."""

from __future__ import annotations

import functools
import gettext
import glob
import os
import re
import sysconfig
from html.parser import HTMLParser
from pathlib import Path
from pydoc_data.topics import topics

#: Folders of the standard library read only on request: its tests are 60% of the bytes and full of deliberately
#: odd code (bad encodings, syntax errors, huge generated literals) that would swamp a model's idea of Python.
TEST_DIRS = frozenset({"test", "tests", "idle_test"})
#: Folders never read: third-party code (other licences) and caches.
SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})
#: Files not read as code: the pydoc topics are English prose stored in a Python dict (see `pydoc_text`).
SKIP_PREFIXES = ("pydoc_data/",)


def stdlib_dir() -> Path:
    """The installed standard library folder (``Lib/``), e.g. ``/usr/lib/python3.11``."""
    return Path(sysconfig.get_paths()["stdlib"])


def _read_stdlib(keep, skip_dirs: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """(path relative to `stdlib_dir()`, text) of the files whose (name, relative path) `keep` accepts, walking
    the library folder without `skip_dirs`; files that are not UTF-8 are skipped. Sorted by path."""
    root = stdlib_dir()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if not keep(name, rel):
                continue
            try:
                out.append((rel, (root / rel).read_bytes().decode("utf-8")))
            except (OSError, UnicodeDecodeError):
                continue
    return tuple(sorted(out))


@functools.lru_cache(maxsize=2)
def stdlib_sources(include_tests: bool = False) -> tuple[tuple[str, str], ...]:
    """(path relative to `stdlib_dir()`, text) of every standard-library `.py` file, sorted by path: the one reader
    of the stdlib corpus (the tokenizer chapter and the data chapter both start here). Skips `SKIP_DIRS`,
    `SKIP_PREFIXES`, `TEST_DIRS` unless `include_tests`, and files that are not UTF-8. Cached per process."""
    skip = SKIP_DIRS | (frozenset() if include_tests else TEST_DIRS)
    return _read_stdlib(lambda name, rel: name.endswith(".py") and not rel.startswith(SKIP_PREFIXES), skip)


def stdlib_files() -> list[Path]:
    """The standard library's `.py` files (tests excluded), sorted, so every run sees the same corpus."""
    return [stdlib_dir() / rel for rel, _ in stdlib_sources()]


def stdlib_text(max_bytes: int | None = None) -> str:
    """The standard library's source as one string, cut to at most `max_bytes` UTF-8 bytes (on file boundaries
    where possible): `stdlib_text(10_000_000)` is the 10 MB training corpus of the benchmark."""
    parts, total = [], 0
    for _, text in stdlib_sources():
        size = len(text.encode("utf-8"))
        if max_bytes is not None and total + size > max_bytes:
            rest = text.encode("utf-8")[: max_bytes - total].decode("utf-8", errors="ignore")
            parts.append(rest)
            break
        parts.append(text)
        total += size
    return "".join(parts)


def pydoc_topics() -> tuple[tuple[str, str], ...]:
    """(topic, text) of the Python documentation shipped with the interpreter (`pydoc_data.topics`, what
    `help("assert")` prints), sorted by topic: English prose."""
    return tuple(sorted(topics.items()))


def pydoc_text() -> str:
    """The pydoc topics as one string."""
    return "\n\n".join(text for _, text in pydoc_topics())


#: The documentation files shipped inside the standard library folder (IDLE's manual and notes, the email package's
#: design note, the licence); grammar files (`lib2to3/*Grammar.txt`) are not prose and are left out.
DOC_SUFFIXES = (".txt", ".rst", ".html")


class _HTMLText(HTMLParser):
    """The visible text of an HTML page (script and style dropped), one block element per paragraph."""

    BLOCKS = frozenset({"p", "div", "li", "dt", "dd", "pre", "h1", "h2", "h3", "h4", "tr", "br", "section"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("script", "style")
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        self.skip -= tag in ("script", "style") and self.skip > 0

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML document, paragraphs separated by blank lines (stdlib `html.parser` only)."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return "\n\n".join(p.strip() for p in re.split(r"\n\s*\n", "".join(parser.parts)) if p.strip())


@functools.lru_cache(maxsize=1)
def stdlib_docs() -> tuple[tuple[str, str], ...]:
    """(path relative to `stdlib_dir()`, text) of the English documentation files in the standard library folder
    (`DOC_SUFFIXES`, tests and third-party folders skipped, HTML reduced to its text), sorted by path."""
    files = _read_stdlib(
        lambda name, rel: name.endswith(DOC_SUFFIXES) and not name.endswith("Grammar.txt"), SKIP_DIRS | TEST_DIRS
    )
    return tuple((rel, html_to_text(text) if rel.endswith(".html") else text) for rel, text in files)


#: A few sentences per language, written for this course, used when the system has no translation catalogs.
SAMPLE_TEXTS: dict[str, str] = {
    "English": (
        "The model reads text as a sequence of tokens. A larger vocabulary means fewer tokens for the same text, "
        "so the model sees more of the document at once and training costs less per byte. The file could not be "
        "opened because the disk is full. Do you want to save your changes before closing the window?"
    ),
    "German": (
        "Das Modell liest Text als eine Folge von Tokens. Ein größerer Wortschatz bedeutet weniger Tokens für "
        "denselben Text, daher sieht das Modell mehr vom Dokument auf einmal, und das Training kostet pro Byte "
        "weniger. Die Datei konnte nicht geöffnet werden, weil der Datenträger voll ist. Möchten Sie Ihre "
        "Änderungen speichern, bevor Sie das Fenster schließen?"
    ),
    "Portuguese": (
        "O modelo lê o texto como uma sequência de tokens. Um vocabulário maior significa menos tokens para o "
        "mesmo texto, então o modelo vê mais do documento de uma só vez e o treinamento custa menos por byte. "
        "Não foi possível abrir o arquivo porque o disco está cheio. Você deseja salvar as alterações antes de "
        "fechar a janela?"
    ),
}

_LOCALE_DIRS = {"German": ["de"], "Portuguese": ["pt_BR", "pt"]}


def translation_texts(language: str, max_bytes: int | None = None) -> tuple[str, str]:
    """(English, `language`) versions of the same messages, from the system's gettext catalogs
    (`/usr/share/locale/<lang>/LC_MESSAGES/*.mo`: the translated user messages of apt, coreutils, bash, ...).

    Parallel text makes bytes-per-token comparable across languages. Falls back to `SAMPLE_TEXTS` where the
    system has no catalogs. Each side is cut to at most `max_bytes` UTF-8 bytes.
    """
    english, other = [], []
    for code in _LOCALE_DIRS[language]:
        for path in sorted(glob.glob(f"/usr/share/locale/{code}/LC_MESSAGES/*.mo")):
            try:
                with open(path, "rb") as f:
                    catalog = gettext.GNUTranslations(f)._catalog
            except Exception:  # noqa: BLE001 - a broken or non-UTF-8 catalog is skipped
                continue
            for key, value in catalog.items():
                if isinstance(key, str) and key and isinstance(value, str) and value and value != key:
                    english.append(key)
                    other.append(value)
        if english:
            break
    if not english:
        return SAMPLE_TEXTS["English"], SAMPLE_TEXTS[language]
    en, tr = "\n".join(english), "\n".join(other)
    if max_bytes is not None:
        en = en.encode()[:max_bytes].decode("utf-8", errors="ignore")
        tr = tr.encode()[:max_bytes].decode("utf-8", errors="ignore")
    return en, tr
