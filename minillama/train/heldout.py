"""Held-out scoring: nats per token and bits per byte, the one function behind `minillama eval` and the trainer's
validation.

**Nats per token** is the mean next-token cross-entropy over the scored targets. It depends on the tokenizer: a
tokenizer with longer tokens has fewer, harder targets. **Bits per byte** does not:

    bits/byte = (total NLL of the scored targets, in nats) / ln 2 / (UTF-8 bytes of those same targets)

The bytes are those of exactly the tokens scored: the sum over every scored target token of the length of the bytes
it stands for (`token_byte_lengths`; for a byte-level BPE this equals the UTF-8 length of the decoded target text).
Special tokens (BOS/EOS between documents, chat markers) stand for no text and count 0 bytes, while their NLL is
counted: predicting where a document ends is part of the text's information. Tokens are scored in the windows the
training loader cuts (``seq_len + 1`` tokens laid end to end, so each token is a target once); the last few tokens
of each shard file that do not fill a window are not scored.

`score_split(model, loader, token_bytes)` scores every window of a split (``max_tokens=None``) or an evenly strided
sample of windows (``max_tokens=N``: ``ceil(N / seq_len)`` windows spread over the whole split), and says which in
`HeldOutScore.describe()`. `compressor_bits_per_byte` gives the yardstick of general-purpose compressors on the
same text: a model that does not beat `xz` has learned little that a dictionary coder cannot.
"""

from __future__ import annotations

import gzip
import lzma
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "HeldOutScore",
    "token_byte_lengths",
    "score_batches",
    "score_split",
    "heldout_windows",
    "heldout_text",
    "compressor_bits_per_byte",
]


@dataclass
class HeldOutScore:
    """The result of scoring: totals and the two rates."""

    nll_nats: float  # summed over the scored targets
    tokens: int  # targets scored
    bytes: int  # UTF-8 bytes those targets stand for (None-free: 0 when unknown)
    windows: int = 0  # windows scored ...
    of_windows: int = 0  # ... out of the split's windows

    @property
    def nats_per_token(self) -> float:
        return self.nll_nats / self.tokens if self.tokens else math.nan

    @property
    def bits_per_byte(self) -> float:
        return self.nll_nats / math.log(2) / self.bytes if self.bytes else math.nan

    @property
    def sampled(self) -> bool:
        return self.windows < self.of_windows

    def describe(self) -> str:
        """What was scored: the whole split, or a strided sample of it."""
        size = f"{self.tokens:,} tokens" + (f", {self.bytes:,} bytes" if self.bytes else "")
        if not self.sampled:
            return f"all {self.windows:,} windows of the split ({size})"
        return f"a strided sample: {self.windows:,} of {self.of_windows:,} windows, evenly spaced ({size})"

    def to_dict(self) -> dict:
        return {
            "nats_per_token": self.nats_per_token,
            "bits_per_byte": self.bits_per_byte,
            "tokens": self.tokens,
            "bytes": self.bytes,
            "windows": self.windows,
            "of_windows": self.of_windows,
        }


def token_byte_lengths(tokenizer, vocab_size: int | None = None) -> Tensor:
    """int64 (vocab,): the UTF-8 bytes each token id stands for, 0 for special tokens and for ids past the
    tokenizer's vocabulary (a model may have a larger embedding). Needs ``tokenizer.decode_bytes`` (`BPETokenizer`)."""
    specials = set(getattr(tokenizer, "special_tokens", {}).values())
    n = tokenizer.n_words
    lengths = [0 if i in specials else len(tokenizer.decode_bytes([i])) for i in range(n)]
    lengths += [0] * max(0, (vocab_size or n) - n)
    return torch.tensor(lengths, dtype=torch.int64)


@torch.no_grad()
def score_batches(
    model: torch.nn.Module, batches: Iterable, token_bytes: Tensor | None = None, bf16: bool = False
) -> HeldOutScore:
    """Summed next-token NLL, targets and target bytes over ``(inputs, targets)`` batches (targets -100 ignored).
    The model is put in eval mode and back; logits are scored in fp32."""
    was_training = model.training
    model.eval()
    nll, tokens, n_bytes, rows = 0.0, 0, 0, 0
    device = next(model.parameters()).device
    try:
        for inputs, targets in batches:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(inputs.to(device))
            targets = targets.to(device)
            keep = targets != -100
            flat = logits.float().flatten(0, 1)
            nll += float(F.cross_entropy(flat, targets.flatten(), ignore_index=-100, reduction="sum"))
            tokens += int(keep.sum())
            if token_bytes is not None:
                n_bytes += int(token_bytes.to(device)[targets[keep]].sum())
            rows += inputs.shape[0]
    finally:
        model.train(was_training)
    return HeldOutScore(nll, tokens, n_bytes, rows, rows)


def heldout_windows(n_windows: int, seq_len: int, max_tokens: int | None = None) -> np.ndarray:
    """Window indices to score: all of them, or ``ceil(max_tokens / seq_len)`` spread evenly over the split."""
    if max_tokens is None or max_tokens >= n_windows * seq_len:
        return np.arange(n_windows)
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    k = max(1, math.ceil(max_tokens / seq_len))
    return np.unique(np.linspace(0, n_windows - 1, k).round().astype(np.int64))


def score_split(
    model: torch.nn.Module,
    loader,
    token_bytes: Tensor | None = None,
    max_tokens: int | None = None,
    rows: int = 16,
    bf16: bool = False,
    progress=None,
) -> HeldOutScore:
    """Score a split read through `loader` (a `ShardLoader`; its position is not touched): every window, or the
    strided sample of `heldout_windows` when `max_tokens` is given. `progress(iterable, total)` may wrap the
    batches (a progress bar)."""
    windows = heldout_windows(loader.n_windows, loader.seq_len, max_tokens)

    def batches():
        for i in range(0, len(windows), rows):
            rows_ = [np.asarray(loader.window(w), dtype=np.int64) for w in windows[i : i + rows]]
            t = torch.from_numpy(np.stack(rows_))
            yield t[:, :-1], t[:, 1:]

    it = batches()
    if progress is not None:
        it = progress(it, total=math.ceil(len(windows) / rows))
    score = score_batches(model, it, token_bytes, bf16)
    score.windows, score.of_windows = len(windows), loader.n_windows
    return score


def heldout_text(arrays: Iterable[np.ndarray], tokenizer) -> bytes:
    """The text bytes of packed token arrays (a split's shard files): every non-special token decoded, documents
    joined as they were packed."""
    specials = set(getattr(tokenizer, "special_tokens", {}).values())
    return b"".join(tokenizer.decode_bytes([int(t) for t in a if int(t) not in specials]) for a in arrays)


def compressor_bits_per_byte(data: bytes) -> dict[str, float]:
    """Bits per byte of `data` compressed whole by ``xz -9e`` (LZMA2, extreme preset) and ``gzip -9``: what a model's
    bits/byte on the same text should be compared with (the compressors see the whole split at once, with its
    repeats across documents; the model sees windows of its context)."""
    if not data:
        raise ValueError("no text to compress")
    xz = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    return {"xz -9e": 8 * len(xz) / len(data), "gzip -9": 8 * len(gzip.compress(data, 9, mtime=0)) / len(data)}
