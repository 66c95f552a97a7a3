"""Measuring tokenizers: bytes per token, and vocabularies cut to their first N ranks (paper §3.2: Llama 3's 128K
vocabulary improves compression from 3.17 to 3.94 characters per token on English and helps non-English text).

BPE is greedy, so the first N merges of a long training run are exactly what a run stopped at N would learn: cutting
a rank table to its first N ranks gives the tokenizer of vocabulary N, trained on the same data. That turns one
training run (or Llama 3's own table) into a whole curve of vocabulary sizes.
"""

from __future__ import annotations

import tiktoken

from minillama.tokenizer.pretokenize import LLAMA3_PATTERN


def fast_encoding(
    ranks: dict[bytes, int], n_ranks: int | None = None, pattern: str = LLAMA3_PATTERN, name: str = "bpe"
):
    """A `tiktoken.Encoding` over the first `n_ranks` ranks (all of them by default), no special tokens."""

    if n_ranks is not None:
        if n_ranks < 256:
            raise ValueError(f"n_ranks={n_ranks}: a byte-level BPE needs at least the 256 single bytes")
        ranks = {t: r for t, r in ranks.items() if r < n_ranks}
    return tiktoken.Encoding(name=f"{name}-{len(ranks)}", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})


def bytes_per_token(encoding, text: str) -> float:
    """UTF-8 bytes of `text` per token (higher = better compression). `encoding` is anything with
    `encode_ordinary` (tiktoken) or `encode` (our tokenizers)."""
    encode = getattr(encoding, "encode_ordinary", None) or encoding.encode
    n = len(encode(text))
    return len(text.encode("utf-8")) / max(n, 1)


def compression_table(ranks: dict[bytes, int], texts: dict[str, str], sizes: list[int]) -> dict[str, dict[int, float]]:
    """`{text name: {vocabulary size: bytes per token}}` for `ranks` cut to each size (sizes count ranks only)."""
    table: dict[str, dict[int, float]] = {name: {} for name in texts}
    for n in sizes:
        enc = fast_encoding(ranks, min(n, len(ranks)))
        for name, text in texts.items():
            table[name][n] = bytes_per_token(enc, text)
    return table


def plot_bytes_per_token(tables: dict[str, dict[str, dict[int, float]]], ax=None):
    """Bytes per token against vocabulary size (log scale), one colour per text, one line style per tokenizer.
    `tables` maps a tokenizer label to a `compression_table`. Returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 4.5))
    else:
        fig = ax.figure
    styles = ["-o", "--s", ":^", "-.d"]
    colours = {}
    for k, (label, table) in enumerate(tables.items()):
        for name, curve in table.items():
            colour = colours.setdefault(name, f"C{len(colours)}")
            xs = sorted(curve)
            ax.plot(
                xs,
                [curve[x] for x in xs],
                styles[k % len(styles)],
                color=colour,
                label=f"{name} ({label})",
                markersize=4,
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size (ranks)")
    ax.set_ylabel("bytes per token")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig
