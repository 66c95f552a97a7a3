"""Figures of a training run: the loss curve (written beside every checkpoint as loss.png) and the schedules.

Both build a `matplotlib.figure.Figure` without pyplot, so a training loop can save them from any thread; with
`ax=`/`axes=` they draw into a notebook's axes instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from minillama.train.recipe import TrainConfig, batch_rows_at

__all__ = ["plot_loss", "plot_schedules"]


def plot_loss(
    history: Sequence[dict],
    val_history: Sequence[dict] = (),
    ax=None,
    x: str = "tokens",
    label: str = "train",
    baseline: float | None = None,
):
    """Training loss (and validation points) against tokens seen; returns the figure."""
    if ax is None:
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
    xs = [r[x] for r in history]
    losses = np.array([r["loss"] for r in history])
    k = max(1, len(losses) // 50)
    ax.plot(xs, losses, lw=0.6 if k > 1 else 1.2, alpha=0.35 if k > 1 else 0.9, label=f"{label} (per step)")
    if k > 1:
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(xs[k - 1 :], smooth, lw=1.5, label=f"{label} (mean of {k})")
    val_history = [r for r in val_history if "val_loss" in r]
    if val_history:
        ax.plot([r[x] for r in val_history], [r["val_loss"] for r in val_history], "o-", ms=3, label="validation")
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", lw=1, label="unigram entropy")
    ax.set_xlabel("tokens seen" if x == "tokens" else x)
    ax.set_ylabel("loss (nats/token)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def plot_schedules(cfg: TrainConfig, seq_len: int | None = None, axes=None):
    """The learning rate and the batch size (tokens per step) over a run of `cfg`; returns the figure."""
    if axes is None:
        fig = Figure(figsize=(9, 3))
        axes = fig.subplots(1, 2)
    seq_len = seq_len or cfg.seq_len
    steps = np.arange(cfg.max_steps)
    axes[0].plot(steps, [cfg.lr_at(int(s)) for s in steps])
    axes[0].set(xlabel="step", ylabel="learning rate", title=f"warmup {cfg.warmup_steps} + {cfg.schedule}")
    tokens, rows = 0, []
    for _ in steps:
        r = batch_rows_at(tokens, cfg.ramp)
        rows.append(r * seq_len)
        tokens += r * seq_len
    axes[1].step(steps, rows, where="post")
    axes[1].set(xlabel="step", ylabel="tokens per step", title="batch-size ramp")
    for ax in axes:
        ax.grid(alpha=0.3)
    return axes[0].figure
