"""Training a byte-level BPE: learn merges from a corpus (paper §3.2; the course's 8K tokenizer for CPU models).

The corpus is pre-tokenized with the Llama 3 regex, so merges never cross piece boundaries, and identical pieces are
counted once with their frequency (a 10 MB corpus has only tens of thousands of distinct pieces). Then, repeatedly:
take the most frequent adjacent pair of tokens (a, b), give their concatenation the next rank, and rewrite every
piece that contains the pair.

Two things make this fast in pure Python:
- incremental pair counts: a merge only touches the pieces that contain (a, b) (an index `pair -> pieces`), and
  only their pair counts change;
- a lazy max-heap of (count, pair): counts of existing pairs only ever go down, so an entry whose count is stale is
  re-pushed with its true count when it reaches the top; new pairs (those with the new token) are pushed once per
  merge with their final counts.

Ties: among pairs with the same count, the one with the smallest (left id, right id) wins, i.e. older tokens first.
If a merge produces bytes that are already a token (e.g. "ab"+"c" after "a"+"bc"), the pieces are rewritten with
that existing id and no new rank is added.
"""

from __future__ import annotations

import heapq
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import regex

from minillama.tokenizer.bpe import BPETokenizer
from minillama.tokenizer.pretokenize import LLAMA3_PATTERN, chunks_for_encoding
from minillama.tokenizer.specials import SPECIAL_TOKENS


def _documents(corpus) -> Iterable[str]:
    """A str is one document; a Path (or `os.PathLike`) is a UTF-8 file, or a folder of them; an iterable yields str
    or Path items."""
    if isinstance(corpus, str):
        yield corpus
        return
    if isinstance(corpus, os.PathLike):
        corpus = [corpus]
    for item in corpus:
        if isinstance(item, str):
            yield item
        elif isinstance(item, os.PathLike):
            path = Path(item)
            if path.is_dir():
                for f in sorted(p for p in path.rglob("*") if p.is_file()):
                    yield f.read_text(encoding="utf-8", errors="replace")
            elif path.is_file():
                yield path.read_text(encoding="utf-8", errors="replace")
            else:
                raise FileNotFoundError(f"corpus file {path} does not exist (pass text as a str, files as Paths)")
        else:
            raise TypeError(f"corpus items must be str (text) or pathlib.Path (a file), got {type(item).__name__}")


def count_pieces(corpus, pattern: str = LLAMA3_PATTERN) -> Counter:
    """`Counter({piece text: count})` over all documents, pre-tokenized exactly as the encoder does."""
    findall = regex.compile(pattern).findall
    counts: Counter = Counter()
    for doc in _documents(corpus):
        for chunk in chunks_for_encoding(doc):
            counts.update(findall(chunk))
    return counts


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each non-overlapping `pair`, left to right, by `new_id`: `[a, a, a]` with (a, a) -> `[z, a]`."""
    a, b = pair
    out = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def count_pairs(words: dict[tuple[int, ...], int]) -> dict[tuple[int, int], int]:
    """`{word (token ids): count}` -> `{adjacent pair: occurrences}`, each occurrence weighted by the word's count.
    Pairs never span two words: merges stay inside pre-tokenized pieces."""
    stats: dict[tuple[int, int], int] = defaultdict(int)
    for w, c in words.items():
        for p in zip(w, w[1:]):
            stats[p] += c
    return dict(stats)


def learn_merges(pieces: Counter, n_ranks: int, verbose: bool = False) -> tuple[list[bytes], list[tuple[int, int]]]:
    """The BPE loop on `{piece: count}`: returns (token bytes by rank, merges in order) with at most `n_ranks`
    tokens (fewer if the pieces run out of pairs)."""
    words: list[list[int]] = []
    counts: list[int] = []
    for piece, c in pieces.items():
        raw = piece.encode("utf-8")
        if len(raw) > 1:  # a single byte has no pair to merge
            words.append(list(raw))
            counts.append(c)

    stats: dict[tuple[int, int], int] = defaultdict(int)  # pair -> occurrences in the corpus
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> pieces that (may) contain it
    for wi, (w, c) in enumerate(zip(words, counts)):
        for p in zip(w, w[1:]):
            stats[p] += c
            where[p].add(wi)
    heap = [(-c, a, b) for (a, b), c in stats.items()]
    heapq.heapify(heap)

    vocab: list[bytes] = [bytes([i]) for i in range(256)]
    ids: dict[bytes, int] = {t: i for i, t in enumerate(vocab)}
    merges: list[tuple[int, int]] = []
    heappop, heappush = heapq.heappop, heapq.heappush
    while len(vocab) < n_ranks and heap:
        neg, a, b = heappop(heap)
        c = stats.get((a, b), 0)
        if c != -neg:
            if 0 < c < -neg:  # the count went down since this entry was pushed: put it back at its true place
                heappush(heap, (-c, a, b))
            continue  # (c > -neg: a newer, higher entry for this pair is in the heap already)
        new = vocab[a] + vocab[b]
        z = ids.get(new)
        if z is None:
            z = len(vocab)
            vocab.append(new)
            ids[new] = z
        merges.append((a, b))
        created: set[tuple[int, int]] = set()
        for wi in where.pop((a, b)):
            w = words[wi]
            n = len(w)
            c_w = counts[wi]
            # Rewrite the piece left to right, each non-overlapping (a, b) -> z, and update only the pair counts
            # at the edges of each merge: (left, a) -> (left', z) and (b, right) -> (z, right).
            nw = []
            i = 0
            while i < n:
                if w[i] == a and i + 1 < n and w[i + 1] == b:
                    if i > 0:
                        stats[(w[i - 1], a)] -= c_w
                        p = (nw[-1], z)
                        stats[p] += c_w
                        where[p].add(wi)
                        created.add(p)
                    if i + 2 < n and not (w[i + 2] == a and i + 3 < n and w[i + 3] == b):
                        right = w[i + 2]
                        stats[(b, right)] -= c_w
                        p = (z, right)
                        stats[p] += c_w
                        where[p].add(wi)
                        created.add(p)
                    nw.append(z)
                    i += 2
                else:
                    nw.append(w[i])
                    i += 1
            if len(nw) != n:
                words[wi] = nw
        del stats[(a, b)]
        for p in created:
            c_p = stats[p]
            if c_p > 0:
                heappush(heap, (-c_p, p[0], p[1]))
        if verbose and len(merges) % 1000 == 0:
            print(f"merge {len(merges)}: {vocab[a]!r} + {vocab[b]!r} (count {c})")
    return vocab, merges


def train_bpe(
    text,
    vocab_size: int,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    pattern: str = LLAMA3_PATTERN,
    verbose: bool = False,
) -> BPETokenizer:
    """Learn a byte-level BPE with `vocab_size` tokens in all, special tokens included.

    `train_bpe(corpus, 8192)` is the course tokenizer: 256 single bytes + 7,680 merges = 7,936 ranks, then Llama 3's
    256 special tokens at ids 7936..8191, so `tok.n_words == 8192 == ModelArgs.vocab_size`. Pass
    `special_tokens=()` for a plain BPE where every one of the `vocab_size` ids is a rank.

    Args:
        text: the corpus: a str (the text itself), a `pathlib.Path` (a file or folder), or an iterable of str
            documents / Paths.
        vocab_size: ranks + special tokens; at least 256 + len(special_tokens).
        special_tokens: appended after the ranks, in order (default: Llama 3's 256).
        pattern: pre-tokenization regex (default: Llama 3's).
    Returns:
        a `BPETokenizer`; `tok.merges` lists the (left id, right id) pairs in the order learned.
    """
    special_tokens = tuple(special_tokens)
    n_ranks = vocab_size - len(special_tokens)
    if n_ranks < 256:
        raise ValueError(
            f"vocab_size={vocab_size} leaves {n_ranks} ranks after {len(special_tokens)} special "
            f"tokens; byte-level BPE needs at least 256, so use vocab_size >= {256 + len(special_tokens)}"
        )

    vocab, merges = learn_merges(count_pieces(text, pattern), n_ranks, verbose=verbose)
    if len(vocab) < n_ranks:
        warnings.warn(
            f"the corpus ran out of pairs after {len(vocab)} ranks (asked for {n_ranks}); n_words is "
            f"{len(vocab) + len(special_tokens)}, not {vocab_size}: train on more text",
            stacklevel=2,
        )
    tok = BPETokenizer({t: i for i, t in enumerate(vocab)}, special_tokens=special_tokens, pattern=pattern)
    tok.merges = merges
    return tok
