"""Figures for the model chapters (02 architecture, 03 RoPE, 04 inference).

Every helper takes `ax=None` (a new figure when None), draws, and returns the figure; none calls `plt.show()`.
matplotlib is imported inside the helpers, so importing this module stays cheap.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from minillama.model.config import ModelArgs, RopeScaling
from minillama.model.kv_cache import kv_cache_bytes
from minillama.model.rope import apply_rope_scaling, rope_frequencies


def _axes(ax, figsize=(7, 4)):
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_rope_bands(head_dim: int = 128, theta: float = 500000.0, scaling: RopeScaling | None = None, ax=None):
    """Wavelength of each RoPE frequency before and after Llama 3.1 scaling (paper §3.4.2), log scale,
    with the three bands shaded: kept (wavelength < L/high_freq_factor), smoothed, divided by `factor`."""
    scaling = scaling or RopeScaling()
    ax = _axes(ax)
    freqs = rope_frequencies(head_dim, theta)
    scaled = apply_rope_scaling(freqs, scaling)
    before, after = (2 * math.pi / freqs).numpy(), (2 * math.pi / scaled).numpy()
    idx = range(len(before))
    L = scaling.original_max_seq_len
    hi_edge, lo_edge = L / scaling.high_freq_factor, L / scaling.low_freq_factor
    kept = [i for i in idx if before[i] < hi_edge]
    divided = [i for i in idx if before[i] > lo_edge]
    for band, color, label in ((kept, "tab:green", "kept"), (divided, "tab:red", f"divided by {scaling.factor:g}")):
        if band:
            ax.axvspan(band[0] - 0.5, band[-1] + 0.5, color=color, alpha=0.08, label=f"{label} ({len(band)})")
    n_mid = len(before) - len(kept) - len(divided)
    if n_mid:
        start = len(kept)
        ax.axvspan(start - 0.5, start + n_mid - 0.5, color="tab:orange", alpha=0.15, label=f"smoothed ({n_mid})")
    ax.plot(list(idx), before, "o-", ms=3, label="wavelength, original")
    ax.plot(list(idx), after, "s-", ms=3, label="wavelength, 3.1 scaling")
    edges = (
        (hi_edge, f"L/{scaling.high_freq_factor:g} = {hi_edge:g}"),
        (lo_edge, f"L/{scaling.low_freq_factor:g} = {lo_edge:g}"),
    )
    for y, text in edges:
        ax.axhline(y, color="gray", linestyle=":", linewidth=1)
        ax.text(0, y * 1.15, text, fontsize=8, color="gray")
    ax.set_yscale("log")
    ax.set_xlabel("frequency index i (pair of channels)")
    ax.set_ylabel("wavelength 2π/f_i (tokens)")
    ax.set_title(f"RoPE wavelengths, head_dim {head_dim}, θ = {theta:g}")
    ax.legend(fontsize=8, loc="upper left")
    return ax.figure


def plot_gqa_memory(presets: Sequence[str], seq_len: int = 131072, ax=None):
    """KV-cache GiB for one `seq_len`-token sequence per preset: with the model's key/value heads (GQA) and as
    if every query head kept its own K and V (multi-head attention). bf16."""
    ax = _axes(ax)
    gqa, mha = [], []
    for name in presets:
        a = ModelArgs.from_preset(name)
        gqa.append(kv_cache_bytes(a.n_layers, a.n_kv_heads, a.head_dim, seq_len=seq_len) / 2**30)
        mha.append(kv_cache_bytes(a.n_layers, a.n_heads, a.head_dim, seq_len=seq_len) / 2**30)
    x = list(range(len(presets)))
    ax.bar([i - 0.2 for i in x], mha, width=0.4, label="one K/V per query head (MHA)", color="tab:gray")
    ax.bar([i + 0.2 for i in x], gqa, width=0.4, label="8 K/V heads (GQA)", color="tab:blue")
    for i, (m, g) in enumerate(zip(mha, gqa)):
        ax.text(i + 0.2, g, f"{g:.0f}", ha="center", va="bottom", fontsize=8)
        ax.text(i - 0.2, m, f"{m:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [p.replace("llama", "") for p in presets])
    ax.set_ylabel("GiB")
    ax.set_yscale("log")
    ax.set_title(f"KV cache for one {seq_len:,}-token sequence (bf16)")
    ax.legend(fontsize=8)
    return ax.figure


def plot_attention(weights, labels: Sequence[str] | None = None, title: str = "attention", ax=None):
    """Heatmap of an attention matrix (queries down, keys across), e.g. one head's softmax weights (s, t)."""
    ax = _axes(ax, figsize=(4.5, 4))
    w = weights.detach().float().cpu().numpy() if hasattr(weights, "detach") else weights
    im = ax.imshow(w, cmap="viridis", vmin=0)
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return ax.figure


def plot_kv_speedup(
    lengths: Sequence[int], seconds_cached: Sequence[float], seconds_uncached: Sequence[float], ax=None
):
    """Generation time against the number of new tokens, with and without the KV cache (paper §6)."""
    ax = _axes(ax)
    ax.plot(lengths, seconds_uncached, "o-", label="no cache: recompute the prefix every step", color="tab:red")
    ax.plot(lengths, seconds_cached, "o-", label="KV cache: one new position per step", color="tab:blue")
    ax.set_xlabel("new tokens generated")
    ax.set_ylabel("seconds")
    ax.set_title("Generation time with and without the KV cache")
    ax.legend(fontsize=8)
    return ax.figure


# ----------------------------------------------------------------------------------------------------------------
# Showing a dialog token by token
# ----------------------------------------------------------------------------------------------------------------
ROLE_COLOURS = {
    "format": "#d0d0d0",
    "system": "#ffe7a8",
    "user": "#b9e3ff",
    "assistant": "#c8f2c2",
    "ipython": "#f7c6e0",
}


def tokens_html(tokenizer, tokens: list[int], roles: list[str] | None = None) -> str:
    """An HTML string showing every token as a coloured span (background: the role from
    `ChatFormat.encode_dialog_with_roles`; special tokens in bold with a border; hover shows the id)."""
    special_ids = set(getattr(tokenizer, "special_tokens", {}).values())
    roles = roles or ["format"] * len(tokens)
    spans = []
    for tid, role in zip(tokens, roles):
        piece = tokenizer.decode([tid])
        shown = html.escape(piece).replace("\n", "\\n<br>") if piece else "&#8203;"
        style = f"background:{ROLE_COLOURS.get(role, '#eeeeee')};padding:1px 2px;margin:1px;border-radius:3px;"
        if tid in special_ids:
            style += "font-weight:bold;border:1px solid #555;"
        spans.append(f'<span title="id {tid} ({role})" style="{style}">{shown}</span>')
    legend = " ".join(
        f'<span style="background:{c};padding:1px 6px;border-radius:3px">{r}</span>' for r, c in ROLE_COLOURS.items()
    )
    return (
        f'<div style="font-family:monospace;font-size:12px;line-height:2">{legend}<br><br>' + "".join(spans) + "</div>"
    )
