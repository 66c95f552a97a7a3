"""The herd in numbers: parameters, weight memory and KV-cache memory of every Llama 3.1 / 3.2 model.

Chapter 00's tables. Every model is built on PyTorch's `meta` device, which records shapes and allocates nothing,
so counting the 405B model's parameters costs no memory. Weight memory is parameters times bytes per parameter
(bf16: 2, fp8: 1); the KV cache holds K and V for every layer and key/value head: 2 · layers · kv_heads · head_dim
· bytes per token (paper Table 3).

Paper: §1 and Table 3 (the models), §6 (inference: the 405B model in BF16 needs more than one 8-GPU machine,
which is why the paper serves it with pipeline parallelism or FP8).
"""

from __future__ import annotations

import torch

from minillama.model import Transformer
from minillama.model.config import ModelArgs
from minillama.model.kv_cache import kv_cache_bytes

#: The five released text models of Llama 3.1 / 3.2, smallest first.
HERD = ("llama3.2-1b", "llama3.2-3b", "llama3.1-8b", "llama3.1-70b", "llama3.1-405b")

GiB = 2**30
GB = 10**9

#: Memory budgets (bytes) for the places a model might run.
DEPLOYMENTS: dict[str, int] = {
    "laptop (16 GiB RAM)": 16 * GiB,
    "one GPU (80 GB)": 80 * GB,
    "server (8 x 80 GB)": 8 * 80 * GB,
}


def parameter_count(args: ModelArgs) -> int:
    """Parameters of the model `args` describes, counted on the meta device (no memory allocated)."""
    with torch.device("meta"):
        model = Transformer(args)
    return model.num_params()


#: Share of a budget a model may use; the rest is left for activations, the runtime and everything else.
USABLE = 0.9


def where_it_fits(n_bytes: int) -> str:
    """The smallest place in `DEPLOYMENTS` whose usable memory (`USABLE` of the budget) holds `n_bytes`, else
    'cluster (several servers)'."""
    for place, budget in DEPLOYMENTS.items():
        if n_bytes <= USABLE * budget:
            return place
    return "cluster (several servers)"


def herd_rows(names=HERD, contexts=(8192, 131072), fit_context: int = 8192) -> list[dict]:
    """One row per model: parameters, weight and KV-cache bytes, and where the weights plus a cache fit.

    Keys: name, params, bf16_bytes, fp8_bytes, kv_bytes_per_token, kv_bytes_at_<n> for each n in `contexts`,
    fits_bf16 and fits_fp8 (weights plus the cache of one sequence of `fit_context` tokens).
    """
    rows = []
    for name in names:
        args = ModelArgs.from_preset(name)
        n = parameter_count(args)
        row = {
            "name": name,
            "params": n,
            "bf16_bytes": 2 * n,
            "fp8_bytes": n,
            "kv_bytes_per_token": kv_cache_bytes(args.n_layers, args.n_kv_heads, args.head_dim),
        }
        for ctx in contexts:
            row[f"kv_bytes_at_{ctx}"] = kv_cache_bytes(args.n_layers, args.n_kv_heads, args.head_dim, seq_len=ctx)
        cache = kv_cache_bytes(args.n_layers, args.n_kv_heads, args.head_dim, seq_len=fit_context)
        row["fits_bf16"] = where_it_fits(row["bf16_bytes"] + cache)
        row["fits_fp8"] = where_it_fits(row["fp8_bytes"] + cache)
        rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of `herd_rows(fit_context=8192)` (GB = 10^9 bytes for weights, KiB/GiB for the cache)."""
    head = (
        f"{'model':<15}{'params':>17}{'bf16 GB':>9}{'fp8 GB':>8}{'KV/token':>10}{'KV@128K':>9}"
        "  fits with an 8K cache (bf16 / fp8)"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        kv128 = r.get("kv_bytes_at_131072")
        kv128 = f"{kv128 / GiB:.1f}GiB" if kv128 is not None else "-"
        lines.append(
            f"{r['name']:<15}{r['params']:>17,}{r['bf16_bytes'] / GB:>9.1f}{r['fp8_bytes'] / GB:>8.1f}"
            f"{r['kv_bytes_per_token'] / 1024:>7.0f}KiB{kv128:>9}  {r['fits_bf16']} / {r['fits_fp8']}"
        )
    return "\n".join(lines)


def plot_memory(rows: list[dict], context: int = 131072, ax=None):
    """Stacked bars per model: bf16 weights and the KV cache of one `context`-token sequence, with the budgets
    of `DEPLOYMENTS` as horizontal lines (log scale). Returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    names = [r["name"].replace("llama", "") for r in rows]
    weights = [r["bf16_bytes"] / GB for r in rows]
    kv = [kv_bytes / GB for kv_bytes in (r.get(f"kv_bytes_at_{context}") for r in rows)]
    ax.bar(names, weights, label="weights (bf16)", color="tab:blue")
    ax.bar(names, kv, bottom=weights, label=f"KV cache, {context:,} tokens (bf16)", color="tab:orange")
    for (place, budget), style in zip(DEPLOYMENTS.items(), (":", "--", "-.")):
        ax.axhline(budget / GB, color="gray", linestyle=style, linewidth=1)
        ax.text(-0.45, budget / GB * 1.08, place, ha="left", fontsize=8, color="dimgray")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)  # a log axis needs a floor for bars that start at 0
    ax.set_ylabel("GB (10^9 bytes)")
    ax.set_title("Memory to serve one sequence")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8)
    ax.figure.tight_layout()
    return ax.figure
