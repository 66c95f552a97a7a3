"""A byte-level BPE tokenizer written from scratch over a rank table, token-for-token identical to tiktoken's
(paper §3.2).

The rank table `{token bytes: rank}` is the whole model: rank r is token id r, ranks 0..n-1 with no gaps, and a
lower rank means the merge was learned earlier. Encoding a piece starts from its single bytes and repeatedly merges
the adjacent pair whose concatenation has the lowest rank (leftmost on a tie) until no adjacent pair is in the
table. Special tokens are appended after the ranks (Llama 3: 128,000 ranks, then 256 specials at 128000..128255).

Files are Meta's `tokenizer.model` format: one line per rank, `base64(token bytes) rank`, specials not included.
"""

from __future__ import annotations

import base64
import heapq
import os
from collections.abc import Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from itertools import chain
from pathlib import Path
from typing import Literal

import regex

from minillama.tokenizer.pretokenize import LLAMA3_PATTERN, chunks_for_encoding
from minillama.tokenizer.specials import SPECIAL_TOKENS, special_token_ids

# --------------------------------------------------------------------------------------------- rank files


def load_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a `tokenizer.model` file (`base64 rank` per line) into `{token bytes: rank}`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    ranks: dict[bytes, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: expected '<base64 token> <rank>', got {line.strip()!r}") from e
    check_ranks(ranks)
    return ranks


def save_ranks(ranks: dict[bytes, int], path: str | os.PathLike) -> Path:
    """Write ranks in Meta's format, in rank order, atomically (a temporary file, then a rename)."""
    check_ranks(ranks)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(token).decode('ascii')} {rank}\n")
    os.replace(tmp, path)
    return path


def check_ranks(ranks: dict[bytes, int]) -> None:
    """Ranks must be 0..n-1 without gaps (they are token ids) and contain all 256 single bytes."""
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError("ranks must be the integers 0..n-1, each used once (a rank is a token id)")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(
            f"ranks lack {len(missing)} single bytes (e.g. {bytes([missing[0]])!r}); byte-level BPE "
            "needs all 256 so that any text can be encoded"
        )


# --------------------------------------------------------------------------------------------- merging one piece


def bpe_merge(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """Split one pre-tokenized piece into tokens: merge the lowest-rank adjacent pair until none is in `ranks`.

    `bpe_merge(b" hello", ranks)` -> `[b" hello"]` with Llama 3's ranks. Quadratic in the piece length, which is fine
    for the short pieces of ordinary text; `_bpe_merge_heap` does the same in O(n log n) for long ones.
    """
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best_rank, best = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best = rank, i
        if best_rank is None:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def _bpe_merge_heap(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """Same result as `bpe_merge`, with a heap of candidate pairs keyed by (rank, position) and a linked list of
    parts, so a 25,000-byte piece takes milliseconds instead of minutes."""
    n = len(piece)
    nxt = list(range(1, n + 1))  # nxt[i]: start of the part after the part starting at i (n = end)
    prv = list(range(-1, n - 1))
    alive = [True] * n
    heap = []
    for i in range(n - 1):
        rank = ranks.get(piece[i : i + 2])
        if rank is not None:
            heap.append((rank, i, i + 1, i + 2))
    heapq.heapify(heap)
    while heap:
        rank, left, right, end = heapq.heappop(heap)
        if not alive[left] or nxt[left] != right or not alive[right] or nxt[right] != end:
            continue  # stale: one of the two parts has changed since this pair was pushed
        alive[right] = False
        nxt[left] = end
        if end < n:
            prv[end] = left
        before = prv[left]
        if before >= 0:
            r = ranks.get(piece[before:end])
            if r is not None:
                heapq.heappush(heap, (r, before, left, end))
        if end < n:
            after = nxt[end]
            r = ranks.get(piece[left:after])
            if r is not None:
                heapq.heappush(heap, (r, left, end, after))
    out, i = [], 0
    while i < n:
        out.append(piece[i : nxt[i]])
        i = nxt[i]
    return out


class _PieceCache(dict):
    """`{piece text: token ids}`; a miss runs BPE on the piece's UTF-8 bytes. Text repeats a lot, so most pieces are
    hits, and a hit is a single C-level dict lookup."""

    max_size = 1 << 20

    def __init__(self, ranks: dict[bytes, int]):
        super().__init__()
        self.ranks = ranks

    def __missing__(self, piece: str) -> tuple[int, ...]:
        raw = piece.encode("utf-8")
        ranks = self.ranks
        rank = ranks.get(raw)
        if rank is not None:
            ids = (rank,)
        else:
            parts = bpe_merge(raw, ranks) if len(raw) <= 64 else _bpe_merge_heap(raw, ranks)
            ids = tuple(ranks[p] for p in parts)
        if len(self) >= self.max_size:
            self.clear()
        self[piece] = ids
        return ids


# --------------------------------------------------------------------------------------------- the tokenizer


class BPETokenizer:
    """Byte-level BPE over a rank table, with special tokens appended after the ranks; the from-scratch encoder.

    Same interface as Meta's Llama 3 `Tokenizer` (and `Llama3Tokenizer`): `encode(text, bos, eos,
    allowed_special, disallowed_special)`, `decode`, `special_tokens`, `n_words`, `bos_id`, `eos_id`, `eot_id`,
    `eom_id`, `pad_id`, `python_tag_id`, `start_header_id`, `end_header_id`, `stop_tokens`.

    Args:
        ranks: `{token bytes: rank}`, ranks 0..n-1, all 256 single bytes included.
        special_tokens: strings given ids n, n+1, ... in order (default: Llama 3's 256).
        pattern: the pre-tokenization regex (default: Llama 3's).
    """

    def __init__(
        self, ranks: dict[bytes, int], special_tokens: Sequence[str] = SPECIAL_TOKENS, pattern: str = LLAMA3_PATTERN
    ):
        check_ranks(ranks)
        self.ranks: dict[bytes, int] = ranks
        self.pattern = pattern
        self._regex = regex.compile(pattern)
        self.special_tokens: dict[str, int] = special_token_ids(len(ranks), tuple(special_tokens))
        self.n_words: int = len(ranks) + len(self.special_tokens)
        self.merges: list[tuple[int, int]] | None = None  # set by train_bpe: the merges in the order learned
        decoder = [b""] * self.n_words
        for token, rank in ranks.items():
            decoder[rank] = token
        for token, i in self.special_tokens.items():
            decoder[i] = token.encode("utf-8")
        self._decoder = decoder
        self._cache = _PieceCache(ranks)
        self._special_regex_cache: dict[frozenset, regex.Pattern] = {}
        get = self.special_tokens.get
        self.bos_id = get("<|begin_of_text|>")
        self.eos_id = get("<|end_of_text|>")
        self.pad_id = get("<|finetune_right_pad_id|>")
        self.start_header_id = get("<|start_header_id|>")
        self.end_header_id = get("<|end_header_id|>")
        self.eom_id = get("<|eom_id|>")
        self.eot_id = get("<|eot_id|>")
        self.python_tag_id = get("<|python_tag|>")
        self.stop_tokens: list[int] = [i for i in (self.eos_id, self.eom_id, self.eot_id) if i is not None]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_words={self.n_words}, ranks={len(self.ranks)}, "
            f"specials={len(self.special_tokens)})"
        )

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ranks in Meta's `tokenizer.model` format (specials are implied, as in Meta's file)."""
        return save_ranks(self.ranks, path)

    @classmethod
    def load(cls, path: str | os.PathLike, special_tokens: Sequence[str] = SPECIAL_TOKENS, **kwargs):
        """Read a `tokenizer.model` file; the special tokens are appended after its ranks."""
        return cls(load_ranks(path), special_tokens=special_tokens, **kwargs)

    # ------------------------------------------------------------------ encoding

    def _resolve_special(self, text: str, allowed_special, disallowed_special) -> frozenset:
        """tiktoken's rules: `allowed_special` ("all" or a set) become special ids; finding a `disallowed_special`
        string ("all" = every special not allowed) raises; everything else is plain text (the default)."""
        if allowed_special == "all":
            allowed = frozenset(self.special_tokens)
        else:
            allowed = frozenset(allowed_special)
            unknown = allowed - self.special_tokens.keys()
            if unknown:
                raise ValueError(
                    f"allowed_special names unknown special tokens {sorted(unknown)[:3]}; "
                    "use names from tokenizer.special_tokens"
                )
        if disallowed_special == "all":
            disallowed = frozenset(self.special_tokens) - allowed
        else:
            disallowed = frozenset(disallowed_special)
        if disallowed:
            for token in disallowed:
                if token in text:
                    raise ValueError(
                        f"text contains the special token {token!r}, which is disallowed; pass "
                        "disallowed_special=() to encode it as plain text, or allowed_special={...} to encode it "
                        "as a special token"
                    )
        return allowed

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids for `text` with every special-token string treated as plain text."""
        findall = self._regex.findall
        lookup = self._cache.__getitem__
        out: list[int] = []
        for chunk in chunks_for_encoding(text):
            out.extend(chain.from_iterable(map(lookup, findall(chunk))))
        return out

    def _encode_chunk(self, chunk: str, allowed: frozenset) -> list[int]:
        if not allowed:
            return list(chain.from_iterable(map(self._cache.__getitem__, self._regex.findall(chunk))))
        pattern = self._special_regex_cache.get(allowed)
        if pattern is None:
            pattern = regex.compile("|".join(regex.escape(t) for t in sorted(allowed, key=len, reverse=True)))
            self._special_regex_cache[allowed] = pattern
        out: list[int] = []
        start = 0
        for m in pattern.finditer(chunk):
            out.extend(self._encode_chunk(chunk[start : m.start()], frozenset()))
            out.append(self.special_tokens[m.group()])
            start = m.end()
        out.extend(self._encode_chunk(chunk[start:], frozenset()))
        return out

    def _encode_body(self, text: str, allowed: frozenset, disallowed_special) -> list[int]:
        """The ids of `text` without BOS/EOS; `Llama3Tokenizer` replaces this with tiktoken."""
        out: list[int] = []
        for chunk in chunks_for_encoding(text):
            out.extend(self._encode_chunk(chunk, allowed))
        return out

    def encode(
        self,
        text: str,
        bos: bool = False,
        eos: bool = False,
        allowed_special: Literal["all"] | AbstractSet[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = (),
    ) -> list[int]:
        """Token ids of `text`, with BOS / EOS if asked.

        Special-token text such as `"<|eot_id|>"` is encoded as ordinary text unless listed in `allowed_special`
        (or `allowed_special="all"`), so user input can never forge a turn boundary. Long inputs are chunked as
        Meta's reference does (see `pretokenize.chunks_for_encoding`).
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}; decode bytes to str first")
        allowed = self._resolve_special(text, allowed_special, disallowed_special)
        if (bos and self.bos_id is None) or (eos and self.eos_id is None):
            raise ValueError(
                "this tokenizer has no <|begin_of_text|> / <|end_of_text|> special token; "
                "pass bos=False, eos=False or build it with Llama 3's special tokens"
            )
        ids = self._encode_body(text, allowed, disallowed_special)
        if bos:
            ids.insert(0, self.bos_id)
        if eos:
            ids.append(self.eos_id)
        return ids

    # ------------------------------------------------------------------ decoding

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes the ids stand for (special tokens as their text)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = list(ids)
        if ids and (min(ids) < 0 or max(ids) >= self.n_words):
            bad = next(i for i in ids if not 0 <= i < self.n_words)
            raise ValueError(f"token id {bad} is outside the vocabulary 0..{self.n_words - 1}")
        return b"".join(map(self._decoder.__getitem__, ids))

    def decode(self, ids: Iterable[int]) -> str:
        """The text the ids stand for; bytes that are not valid UTF-8 (a token may hold part of a character)
        become U+FFFD, as in tiktoken, never an exception."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token."""
        return self.decode_bytes([token_id])
