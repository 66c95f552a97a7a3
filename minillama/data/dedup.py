"""De-duplication at three levels (paper §3.1.1 "De-duplication").

Llama 3 removes duplicates at the URL level (keep the most recent page), the **document** level (global MinHash
near-duplicate removal) and the **line** level (ccNet-style: remove lines that appear more than 6 times in each
bucket of 30M documents). Our documents have no URLs, so this module has:

* `exact_dedup`: identical documents after normalization (case, Unicode form, whitespace), found by hashing.
* `near_dedup`: MinHash signatures over word n-gram shingles plus locality-sensitive hashing (LSH) banding to find
  candidate pairs, confirmed by their Jaccard similarity; each cluster of near-duplicates keeps its first document.
* `line_dedup`: lines repeated more than ``max_repeats`` times within a bucket of documents are removed.

MinHash in one paragraph: for a set S of shingles and a random permutation π of the hash space,
P[min π(S) = min π(T)] = J(S, T) = |S ∩ T| / |S ∪ T|. With ``num_perm`` independent permutations the fraction of
equal minima estimates J. We use the universal-hash family π_k(h) = ((a_k·h + b_k) mod p) mod 2^32, with
p = 2^61 - 1, h the first 4 bytes of SHA-1 (little-endian) and (a_k, b_k) drawn from ``numpy.random.RandomState
(seed)``; the product a_k·h is computed in uint64 and wraps mod 2^64 as numpy does. These are the choices of
``datasketch.MinHash(scheme="legacy")``, so our signatures can be (and in the tests are) checked bit for bit against
it. LSH cuts a signature into ``b`` bands of ``r`` rows; two documents become a candidate pair when any band is
identical, which happens with probability 1 - (1 - J^r)^b: an S-curve that rises near J ≈ (1/b)^(1/r).
"""

from __future__ import annotations

import hashlib
import random
import re
import struct
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from minillama.data.corpus import Document
from minillama.data.report import StepReport

__all__ = [
    "normalize_for_hash",
    "exact_dedup",
    "shingles",
    "hash32",
    "minhash_permutations",
    "minhash_signature",
    "minhash_signatures",
    "estimate_jaccard",
    "jaccard",
    "lsh_collision_probability",
    "plot_s_curve",
    "optimal_lsh_params",
    "lsh_band_keys",
    "lsh_candidate_pairs",
    "near_duplicate_clusters",
    "near_dedup",
    "normalize_line",
    "line_dedup",
]

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)


# ----------------------------------------------------------------------------------------------- exact
def normalize_for_hash(text: str) -> str:
    """Text as compared by exact dedup: Unicode NFKC, case-folded, every run of whitespace one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def exact_dedup(docs: Sequence[Document]) -> tuple[list[Document], StepReport]:
    """Pipeline step (paper §3.1.1): keep the first document of each group whose normalized text hashes the same.

    Report details: ``clusters`` maps each kept id with duplicates to the ids removed as its copies.
    """
    report = StepReport.start("exact_dedup", "§3.1.1 document-level dedup: identical after normalization", docs)
    first: dict[bytes, Document] = {}
    clusters: dict[str, list[str]] = defaultdict(list)
    kept = []
    for doc in docs:
        key = hashlib.sha1(normalize_for_hash(doc.text).encode("utf-8")).digest()
        if key in first:
            report.remove(doc, f"exact duplicate of {first[key].id}")
            clusters[first[key].id].append(doc.id)
        else:
            first[key] = doc
            kept.append(doc)
    report.details["clusters"] = dict(clusters)
    return kept, report.finish(kept)


# ----------------------------------------------------------------------------------------------- MinHash
def shingles(text: str, n: int = 5) -> set[str]:
    """The set of word n-grams ("shingles") of the lower-cased, whitespace-split text, each joined by one space.

    A text with fewer than `n` words gives one shingle (all its words); an empty text gives the empty set.
    """
    if n < 1:
        raise ValueError(f"shingle size n must be >= 1, got {n}")
    words = text.lower().split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def hash32(data: bytes) -> int:
    """32-bit hash of bytes: the first 4 bytes of SHA-1, read little-endian."""
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def _hash_shingles(shingle_set: Iterable[str]) -> np.ndarray:
    """Sorted unique uint64 array of the 32-bit hashes of the shingles."""
    return np.unique(np.fromiter((hash32(s.encode("utf-8")) for s in shingle_set), dtype=np.uint64))


def minhash_permutations(num_perm: int = 128, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) parameters of `num_perm` hash permutations, each a uint64 array of shape (num_perm,).

    Drawn from ``numpy.random.RandomState(seed)``: for each permutation k in turn, a_k in [1, p) then b_k in [0, p).
    """
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    rng = np.random.RandomState(seed)
    pairs = [
        (rng.randint(1, MERSENNE_PRIME, dtype=np.uint64), rng.randint(0, MERSENNE_PRIME, dtype=np.uint64))
        for _ in range(num_perm)
    ]
    a, b = np.array(pairs, dtype=np.uint64).T
    return a.copy(), b.copy()


def _signature_from_hashes(hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Min over shingles of each permutation: hashes (n,) -> signature (num_perm,), uint64."""
    if hashes.size == 0:
        return np.full(a.shape, MAX_HASH, dtype=np.uint64)
    permuted = (hashes[:, None] * a[None, :] + b[None, :]) % MERSENNE_PRIME & MAX_HASH  # (n, num_perm)
    return permuted.min(axis=0)


def minhash_signature(shingle_set: Iterable[str], permutations: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """MinHash signature of a set of shingles: uint64 array (num_perm,), all 2^32-1 for the empty set."""
    a, b = permutations
    return _signature_from_hashes(_hash_shingles(shingle_set), a, b)


def minhash_signatures(texts: Sequence[str], num_perm: int = 128, ngram: int = 5, seed: int = 1) -> np.ndarray:
    """Signatures of many texts: uint64 array (n_texts, num_perm)."""
    perms = minhash_permutations(num_perm, seed)
    sigs = np.empty((len(texts), num_perm), dtype=np.uint64)
    for i, text in enumerate(texts):
        sigs[i] = minhash_signature(shingles(text, ngram), perms)
    return sigs


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of positions where two signatures agree: an unbiased estimate of the Jaccard similarity."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures differ in length: {sig_a.shape} vs {sig_b.shape}")
    return float(np.mean(sig_a == sig_b))


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# ----------------------------------------------------------------------------------------------- LSH
def lsh_collision_probability(s, bands: int, rows: int):
    """P[a pair with Jaccard `s` shares at least one band] = 1 - (1 - s^rows)^bands (works on arrays)."""
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands


def plot_s_curve(bands: int, rows: int, threshold: float | None = None, ax=None):
    """Plot the LSH S-curve 1 - (1 - s^rows)^bands against Jaccard s, with the threshold. Returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    s = np.linspace(0, 1, 201)
    ax.plot(s, lsh_collision_probability(s, bands, rows), label=f"b={bands}, r={rows}")
    if threshold is not None:
        ax.axvline(threshold, color="gray", ls="--", label=f"threshold {threshold}")
    ax.axvline((1 / bands) ** (1 / rows), color="tab:orange", ls=":", label="(1/b)^(1/r)")
    ax.set_xlabel("Jaccard similarity of the pair")
    ax.set_ylabel("P[candidate pair]")
    ax.legend(fontsize=8)
    return ax.figure


def optimal_lsh_params(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """(bands, rows) with bands·rows <= num_perm minimizing the weighted false-positive area (the S-curve below
    `threshold`) plus false-negative area (1 - S-curve above it), integrated numerically."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    below = np.linspace(0.0, threshold, 1001)
    above = np.linspace(threshold, 1.0, 1001)
    best, best_err = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = np.trapezoid(lsh_collision_probability(below, bands, rows), below)
            fn = np.trapezoid(1.0 - lsh_collision_probability(above, bands, rows), above)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err - 1e-12:
                best, best_err = (bands, rows), err
    return best


def lsh_band_keys(signature: np.ndarray, bands: int, rows: int) -> list[bytes]:
    """The `bands` keys of one signature: band i is ``signature[i*rows:(i+1)*rows]`` as bytes."""
    if bands * rows > signature.shape[-1]:
        raise ValueError(f"bands*rows = {bands * rows} exceeds the signature length {signature.shape[-1]}")
    return [signature[i * rows : (i + 1) * rows].tobytes() for i in range(bands)]


def lsh_candidate_pairs(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """Index pairs (i < j) of rows of `signatures` (n, num_perm) that agree on at least one whole band."""
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        block = np.ascontiguousarray(signatures[:, band * rows : (band + 1) * rows])
        for i in range(len(signatures)):
            buckets[block[i].tobytes()].append(i)
        for members in buckets.values():
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    pairs.add((members[x], members[y]))
    return pairs


def _components(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components (size > 1) of a graph on 0..n-1, each sorted, ordered by their first member."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def near_duplicate_clusters(
    texts: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 1,
    bands: int | None = None,
    rows: int | None = None,
) -> dict:
    """Find near-duplicates: MinHash + LSH candidates, confirmed by Jaccard of the (hashed) shingle sets.

    Returns ``{"clusters": [[i, j, ...], ...], "pairs": {(i, j): jaccard}, "candidates": n_candidates,
    "bands": b, "rows": r}`` with clusters as connected components of confirmed pairs (J >= threshold).
    """
    if (bands is None) != (rows is None):
        raise ValueError("give both bands and rows, or neither (then they are chosen for the threshold)")
    if bands is None:
        bands, rows = optimal_lsh_params(threshold, num_perm)
    a, b = minhash_permutations(num_perm, seed)
    hashed = [_hash_shingles(shingles(t, ngram)) for t in texts]
    sigs = np.stack([_signature_from_hashes(h, a, b) for h in hashed]) if texts else np.empty((0, num_perm), np.uint64)
    candidates = lsh_candidate_pairs(sigs, bands, rows)
    confirmed = {}
    for i, j in sorted(candidates):
        inter = np.intersect1d(hashed[i], hashed[j], assume_unique=True).size
        union = hashed[i].size + hashed[j].size - inter
        sim = inter / union if union else 1.0
        if sim >= threshold:
            confirmed[(i, j)] = sim
    return {
        "clusters": _components(len(texts), confirmed),
        "pairs": confirmed,
        "candidates": len(candidates),
        "bands": bands,
        "rows": rows,
    }


def near_dedup(
    docs: Sequence[Document], threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1
) -> tuple[list[Document], StepReport]:
    """Pipeline step (paper §3.1.1 "global MinHash"): in each cluster of near-duplicates keep the first document.

    Report details: LSH parameters, candidate and confirmed pair counts, and ``clusters`` as lists of ids (kept
    first).
    """
    report = StepReport.start("near_dedup", f"§3.1.1 MinHash + LSH near-duplicates, Jaccard >= {threshold}", docs)
    found = near_duplicate_clusters([d.text for d in docs], threshold, num_perm, ngram, seed)
    drop: dict[int, str] = {}
    for cluster in found["clusters"]:
        keep = cluster[0]
        for i in cluster[1:]:
            sim = found["pairs"].get((keep, i))
            how = f"Jaccard {sim:.2f}" if sim is not None else "same cluster"
            drop[i] = f"near-duplicate of {docs[keep].id} ({how})"
    kept = []
    for i, doc in enumerate(docs):
        if i in drop:
            report.remove(doc, drop[i])
        else:
            kept.append(doc)
    report.details.update(
        bands=found["bands"],
        rows=found["rows"],
        num_perm=num_perm,
        ngram=ngram,
        threshold=threshold,
        candidate_pairs=found["candidates"],
        confirmed_pairs=len(found["pairs"]),
        clusters=[[docs[i].id for i in c] for c in found["clusters"]],
    )
    return kept, report.finish(kept)


# ----------------------------------------------------------------------------------------------- lines
_DIGITS = re.compile(r"\d")


def normalize_line(line: str) -> str:
    """A line as line-level dedup compares it (ccNet-style): stripped, lower-cased, digits -> 0, spaces collapsed."""
    return _DIGITS.sub("0", " ".join(line.lower().split()))


def line_dedup(
    docs: Sequence[Document],
    max_repeats: int = 6,
    bucket_size: int = 1000,
    seed: int = 0,
    kinds: Sequence[str] | None = ("prose",),
) -> tuple[list[Document], StepReport]:
    """Pipeline step (paper §3.1.1 line-level dedup): remove lines that occur more than `max_repeats` times within their
    bucket of documents. The paper: more than 6 times per bucket of 30M documents.

    Documents of the given `kinds` are shuffled with `seed` into buckets of `bucket_size` documents; occurrences of
    each normalized non-blank line are counted per bucket, and lines counted more than `max_repeats` times are
    removed from every document of that bucket (blank lines are never removed). Documents left blank are dropped.
    ``kinds=("prose",)`` (the default) leaves code alone: in code the most repeated lines (``else:``, ``return``,
    ``\"\"\"``) are syntax, and removing them breaks every file; pass ``kinds=None`` to dedup every document.

    Report details: lines removed, documents edited, and the most repeated lines with their counts.
    """
    if max_repeats < 1 or bucket_size < 1:
        raise ValueError(f"max_repeats and bucket_size must be >= 1, got {max_repeats}, {bucket_size}")
    report = StepReport.start(
        "line_dedup", f"§3.1.1 line-level dedup: lines seen > {max_repeats} times per bucket", docs
    )
    eligible = [i for i, d in enumerate(docs) if kinds is None or d.kind in kinds]
    random.Random(seed).shuffle(eligible)
    new_text: dict[int, str] = {}
    lines_removed, top = 0, Counter()
    for start in range(0, len(eligible), bucket_size):
        bucket = eligible[start : start + bucket_size]
        counts = Counter(normalize_line(line) for i in bucket for line in docs[i].text.split("\n") if line.strip())
        repeated = {line for line, c in counts.items() if c > max_repeats}
        top.update({line: counts[line] for line in repeated})
        for i in bucket:
            lines = docs[i].text.split("\n")
            keep = [line for line in lines if not line.strip() or normalize_line(line) not in repeated]
            if len(keep) != len(lines):
                lines_removed += len(lines) - len(keep)
                new_text[i] = "\n".join(keep)
    kept = []
    for i, doc in enumerate(docs):
        if i not in new_text:
            kept.append(doc)
        elif new_text[i].strip():
            kept.append(doc.with_text(new_text[i]))
        else:
            report.remove(doc, "every line was a repeated line")
    report.details.update(
        lines_removed=lines_removed,
        documents_edited=len(new_text),
        max_repeats=max_repeats,
        bucket_size=bucket_size,
        top_lines=top.most_common(10),
    )
    return kept, report.finish(kept)
