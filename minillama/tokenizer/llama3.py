"""The real Llama 3 tokenizer: 128,000 BPE ranks from Meta's `tokenizer.model` plus 256 special tokens
(paper §3.2: "a vocabulary with 128K tokens ... 100K tokens from the tiktoken tokenizer combined with 28K additional
tokens to better support non-English languages").

`Llama3Tokenizer()` loads the file shipped inside the installed `llama-models` package; `Llama3Tokenizer(path)`
loads any file in that format (a course tokenizer saved by `BPETokenizer.save` works too). Encoding runs on tiktoken
by default; `backend="python"` uses the from-scratch encoder of `bpe.py`, which gives the same ids.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import tiktoken

from minillama.tokenizer.bpe import BPETokenizer, load_ranks
from minillama.tokenizer.pretokenize import LLAMA3_PATTERN, chunks_for_encoding
from minillama.tokenizer.specials import SPECIAL_TOKENS

_DEFAULT: Llama3Tokenizer | None = None


def llama3_model_path() -> Path:
    """Path of the `tokenizer.model` shipped by the installed `llama-models` package (no download)."""
    try:
        # optional ([dev] extra): only to find the tokenizer.model file it ships
        import llama_models.llama3 as pkg
    except ImportError as e:  # pragma: no cover - llama-models is a dev dependency
        raise FileNotFoundError(
            "the llama-models package is not installed (pip install llama-models); or pass "
            "the path of a tokenizer.model file to Llama3Tokenizer(path)"
        ) from e
    return Path(pkg.__file__).resolve().parent / "tokenizer.model"


class Llama3Tokenizer(BPETokenizer):
    """Llama 3's tokenizer with Meta's interface: `encode(text, bos, eos, allowed_special, disallowed_special)`,
    `decode`, `special_tokens` (ids 128000..128255), `n_words` = 128256, `bos_id`, `eos_id`, `eot_id`, `eom_id`,
    `pad_id`, `python_tag_id`, `stop_tokens` = [128001, 128008, 128009].

    Args:
        path: a `tokenizer.model` file; default: the one in the installed `llama-models` package.
        backend: "tiktoken" (fast, Rust) or "python" (the from-scratch encoder; same ids).
        special_tokens: appended after the ranks (default: Llama 3's 256).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        backend: str = "tiktoken",
        special_tokens: Sequence[str] = SPECIAL_TOKENS,
    ):
        if backend not in ("tiktoken", "python"):
            raise ValueError(f"backend must be 'tiktoken' or 'python', got {backend!r}")
        self.path = Path(path) if path is not None else llama3_model_path()
        super().__init__(load_ranks(self.path), special_tokens=special_tokens, pattern=LLAMA3_PATTERN)
        self.backend = backend
        self.model = None
        if backend == "tiktoken":
            self.model = tiktoken.Encoding(
                name=self.path.name,
                pat_str=self.pattern,
                mergeable_ranks=self.ranks,
                special_tokens=self.special_tokens,
            )

    @classmethod
    def get_instance(cls) -> Llama3Tokenizer:
        """One shared default instance (tiktoken backend, real ranks), loaded on first use; like Meta's
        `Tokenizer.get_instance()`. Loading takes about a second, so tests and notebooks should share it."""
        global _DEFAULT
        if _DEFAULT is None:
            _DEFAULT = cls()
        return _DEFAULT

    def _encode_body(self, text: str, allowed: frozenset, disallowed_special) -> list[int]:
        if self.model is None:
            return super()._encode_body(text, allowed, disallowed_special)
        # Disallowed specials were already checked on the whole text; tiktoken only needs the allowed set.
        encode = self.model.encode
        out: list[int] = []
        for chunk in chunks_for_encoding(text):
            out += encode(chunk, allowed_special=allowed, disallowed_special=())
        return out

    def encode_ordinary(self, text: str) -> list[int]:
        if self.model is None:
            return super().encode_ordinary(text)
        out: list[int] = []
        for chunk in chunks_for_encoding(text):
            out += self.model.encode_ordinary(chunk)
        return out
