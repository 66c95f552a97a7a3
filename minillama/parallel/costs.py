"""Back-of-the-envelope costs of 4D parallelism: memory and communication per GPU for the Llama 3.1 models on the
paper's Table 4 layouts (paper §3.3.2). Pure arithmetic on `ModelArgs`; nothing is allocated.

Conventions (each a plain formula below, one place to change an assumption):
- A micro-batch is one sequence; a DP rank runs M = batch/DP micro-batches per step; under CP a GPU holds
  seq/CP of its tokens. BF16 weights and activations (2 bytes), FP32 gradients (the paper accumulates and
  reduce-scatters gradients in FP32) and FP32 AdamW state (master weights, m, v: 12 bytes).
- FSDP as in the paper: parameters, gradients and optimizer state are sharded over the ranks that hold the same
  weights (DP×CP); parameters are all-gathered once per step and *not* resharded after the forward, so a GPU holds
  its whole TP×PP share of BF16 weights and of FP32 gradient-accumulation buffers during the step.
- Collective volumes are bytes each GPU sends: ring all-reduce 2(n−1)/n·size, all-gather and reduce-scatter
  (n−1)/n·size of the full tensor; point-to-point sends count once.
- TP (Megatron, no sequence parallelism): 2 all-reduces of the (tokens, d) activation per layer forward, 2
  backward. CP: all-gather of K and V per layer forward (GQA: n_kv_heads/TP heads), reduce-scatter of their
  gradients backward. PP: one activation forward and one gradient backward per micro-batch and chunk boundary.
- Activations kept per layer and token without recomputation (flash attention, so no s² scores):
  replicated (4d: block input, attention-norm output, residual, ffn-norm output) + split over TP
  (2d: q and attention output, 2·kv·e: k and v, 4f: w1, w3, silu(w1), product) + the gathered K/V under CP.
  The number of micro-batch-chunks in flight on the first pipeline rank comes from simulating the schedule.

Model FLOPs per token for MFU: 6·N + 12·L·d·seq (PaLM's formula; the attention term counts the full square).
"""

from __future__ import annotations

from dataclasses import dataclass

from minillama.model.config import ModelArgs
from minillama.parallel.cp import cp_positions
from minillama.parallel.schedules import interleaved, one_f_one_b, simulate

GiB = 2**30


@dataclass(frozen=True)
class Layout:
    """One row of the paper's Table 4 (405B pre-training)."""

    gpus: int
    tp: int
    cp: int
    pp: int
    dp: int
    seq_len: int
    batch_per_dp: int  # sequences per DP rank per step = micro-batches M
    tokens_per_batch: float  # as printed (16M)
    tflops_per_gpu: float  # measured, as printed
    mfu: float  # BF16 model FLOPs utilisation, as printed

    @property
    def name(self) -> str:
        return f"TP{self.tp} CP{self.cp} PP{self.pp} DP{self.dp}, seq {self.seq_len:,}"


#: Table 4 of the paper. The third row prints DP=4 in both copies of the paper; only DP=8 satisfies
#: GPUs = TP·CP·PP·DP (16,384 = 8·16·16·8) and tokens = DP · batch · seq (8 · 16 · 131,072 ≈ 16M) (paper Table 4).
TABLE4 = (
    Layout(8192, 8, 1, 16, 64, 8192, 32, 16e6, 430, 0.43),
    Layout(16384, 8, 1, 16, 128, 8192, 16, 16e6, 400, 0.41),
    Layout(16384, 8, 16, 16, 8, 131072, 16, 16e6, 380, 0.38),
)
TABLE4_PRINTED_DP = (64, 128, 4)


def layer_params(a: ModelArgs) -> int:
    """Parameters of one block: 2·d² (wq, wo) + 2·d·kv·e (wk, wv) + 3·d·f (w1, w2, w3) + 2·d (two norms)."""
    d, kv_e, f = a.dim, a.n_kv_heads * a.head_dim, a.ffn_hidden_dim
    return 2 * d * d + 2 * d * kv_e + 3 * d * f + 2 * d


def total_params(a: ModelArgs) -> int:
    """n_layers blocks + embedding V·d + (untied) output V·d + final norm d."""
    head = 0 if a.tie_word_embeddings else a.vocab_size * a.dim
    return a.n_layers * layer_params(a) + a.vocab_size * a.dim + head + a.dim


def params_per_gpu(a: ModelArgs, tp: int, pp: int) -> int:
    """Largest parameter share of one GPU (before FSDP sharding): the pipeline ranks hold (n_layers + 2)/pp "slots"
    (embedding and output count as one layer each, Llama 3), everything split over TP except the norms."""
    slots = a.n_layers + 2
    per_rank = -(-slots // pp)  # ceil
    layer = layer_params(a)
    norms = 2 * a.dim
    emb = a.vocab_size * a.dim // tp
    first = emb + (per_rank - 1) * ((layer - norms) // tp + norms)
    middle = per_rank * ((layer - norms) // tp + norms)
    last = (per_rank - 1) * ((layer - norms) // tp + norms) + emb + a.dim
    return max(first, middle, last) if pp > 1 else total_params(a) // tp


def model_flops_per_token(a: ModelArgs, seq_len: int) -> float:
    """Training FLOPs per token: 6·N (forward + backward matmuls) + 12·L·d·seq (attention scores and values)."""
    return 6 * total_params(a) + 12 * a.n_layers * a.dim * seq_len


def activation_bytes_per_token_layer(
    a: ModelArgs, tp: int = 1, cp: int = 1, bytes_per: int = 2, sequence_parallel: bool = False
) -> float:
    """Saved activations of one block for one (local) token, BF16, no recomputation (see module docstring).
    With Megatron's sequence parallelism the 4d replicated activations are split over TP as well."""
    d, kv_e, f = a.dim, a.n_kv_heads * a.head_dim, a.ffn_hidden_dim
    local = 4 * d / (tp if sequence_parallel else 1) + (2 * d + 2 * kv_e + 4 * f) / tp
    gathered_kv = (cp - 1) * 2 * kv_e / tp if cp > 1 else 0  # the other ranks' K and V, kept for backward
    return bytes_per * (local + gathered_kv)


def memory_per_gpu(
    a: ModelArgs, lay: Layout, virtual_stages: int = 1, sequence_parallel: bool = False
) -> dict[str, float]:
    """Bytes on the busiest GPU: BF16 weights, FP32 gradients, sharded optimizer state, activations in flight."""
    p = params_per_gpu(a, lay.tp, lay.pp)
    shard = lay.dp * lay.cp  # ranks holding the same weights
    tokens = lay.seq_len // lay.cp  # per micro-batch on this GPU
    n_stages = lay.pp * virtual_stages
    layers_per_chunk = (a.n_layers + 2) / n_stages
    sched = (
        one_f_one_b(lay.pp, lay.batch_per_dp)
        if virtual_stages == 1
        else interleaved(lay.pp, lay.batch_per_dp, virtual_stages)
    )
    in_flight_chunks = simulate(sched).peak_in_flight[0]
    act = (
        in_flight_chunks
        * layers_per_chunk
        * tokens
        * activation_bytes_per_token_layer(a, lay.tp, lay.cp, sequence_parallel=sequence_parallel)
    )
    out = {
        "weights (bf16, gathered)": 2 * p,
        "gradients (fp32 accumulation)": 4 * p,
        "optimizer (fp32 master + Adam m, v; sharded)": 12 * p / shard,
        "activations (in flight)": act,
    }
    out["total"] = sum(out.values())
    return out


def comm_per_gpu(a: ModelArgs, lay: Layout, virtual_stages: int = 1, bytes_per: int = 2) -> dict[str, float]:
    """Bytes one GPU sends per optimizer step along each dimension (busiest pipeline rank, see docstring)."""
    m = lay.batch_per_dp
    tokens = lay.seq_len // lay.cp
    layers = -(-(a.n_layers + 2) // lay.pp)
    act = tokens * a.dim * bytes_per  # one (tokens, d) activation
    kv = lay.seq_len * 2 * (a.n_kv_heads // min(lay.tp, a.n_kv_heads)) * a.head_dim * bytes_per  # full K and V
    ring = lambda n: 2 * (n - 1) / n  # noqa: E731 - all-reduce factor
    frac = lambda n: (n - 1) / n  # noqa: E731 - all-gather / reduce-scatter factor
    p = params_per_gpu(a, lay.tp, lay.pp)
    shard = lay.dp * lay.cp
    return {
        "TP (4 all-reduces per layer and micro-batch)": m * layers * 4 * ring(lay.tp) * act,
        "CP (K/V all-gather + gradient reduce-scatter)": m * layers * 2 * frac(lay.cp) * kv,
        "PP (activations + gradients, send/recv)": m * 2 * virtual_stages * act if lay.pp > 1 else 0.0,
        "DP (bf16 all-gather + fp32 reduce-scatter)": frac(shard) * (2 * p + 4 * p),
    }


def table4_check(lay: Layout, printed_dp: int | None = None) -> dict[str, float]:
    """What the row's own numbers imply: GPUs from the mesh, tokens per batch, the peak FLOP/s behind the MFU."""
    dp = printed_dp or lay.dp
    return {
        "gpus = tp·cp·pp·dp": lay.tp * lay.cp * lay.pp * dp,
        "tokens = dp·batch·seq": dp * lay.batch_per_dp * lay.seq_len,
        "implied peak TFLOP/s = TFLOPs / MFU": lay.tflops_per_gpu / lay.mfu,
    }


def step_time(a: ModelArgs, lay: Layout) -> float:
    """Seconds per step implied by the measured TFLOPs/GPU: model FLOPs of the batch / (GPUs · TFLOP/s)."""
    tokens = lay.dp * lay.batch_per_dp * lay.seq_len
    return model_flops_per_token(a, lay.seq_len) * tokens / (lay.gpus * lay.tflops_per_gpu * 1e12)


def cost_rows(preset: str = "llama3.1-405b", virtual_stages: int = 1, sequence_parallel: bool = False) -> list[dict]:
    """One row per Table 4 layout for `preset`: GiB of memory and of traffic per GPU per step, by dimension."""
    a = ModelArgs.from_preset(preset)
    rows = []
    for lay in TABLE4:
        mem = memory_per_gpu(a, lay, virtual_stages, sequence_parallel)
        comm = comm_per_gpu(a, lay, virtual_stages)
        rows.append(
            {
                "layout": lay.name,
                **{f"mem {k}": v / GiB for k, v in mem.items()},
                **{f"comm {k}": v / GiB for k, v in comm.items()},
                "bubble": (lay.pp - 1) / (virtual_stages * lay.batch_per_dp),
                "step s (implied)": step_time(a, lay),
            }
        )
    return rows


def cp_attention_work(seq_len: int, cp: int, balanced: bool = True) -> list[int]:
    """Causal-attention work per CP rank (query-key pairs, Σ over its tokens of position + 1). Balanced: Llama 3's
    chunks i and 2·CP−1−i (`minillama.parallel.cp.cp_positions`); else a plain split into CP contiguous pieces."""
    if balanced:
        return [int((cp_positions(seq_len, r, cp) + 1).sum()) for r in range(cp)]
    piece = seq_len // cp
    return [sum(p + 1 for p in range(r * piece, (r + 1) * piece)) for r in range(cp)]


def plot_cp_balance(seq_len: int = 64, cp: int = 4, ax=None):
    """Bars of causal-attention work per CP rank: a contiguous split against Llama 3's 2×CP chunks. Returns the
    figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3)) if ax is None else (ax.figure, ax)
    plain, llama = cp_attention_work(seq_len, cp, False), cp_attention_work(seq_len, cp, True)
    xs = range(cp)
    ax.bar([x - 0.2 for x in xs], plain, width=0.4, label="contiguous: rank r holds piece r")
    ax.bar([x + 0.2 for x in xs], llama, width=0.4, label="Llama 3: chunks i and 2·CP−1−i")
    ax.set_xticks(list(xs), [f"CP rank {r}" for r in xs])
    ax.set_ylabel("query-key pairs (causal)")
    ax.set_title(
        f"attention work per rank, sequence {seq_len}, CP={cp}: max/mean "
        f"{max(plain) / (sum(plain) / cp):.2f} vs {max(llama) / (sum(llama) / cp):.2f}",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    return fig


def plot_costs(rows: list[dict], what: str = "mem", ax=None):
    """Stacked bars per layout of the `mem ...` (GiB per GPU) or `comm ...` (GiB sent per GPU per step) columns
    of `cost_rows`. Returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.2)) if ax is None else (ax.figure, ax)
    keys = [k for k in rows[0] if k.startswith(what + " ") and not k.endswith("total")]
    bottom = [0.0] * len(rows)
    for k in keys:
        vals = [r[k] for r in rows]
        ax.barh([r["layout"] for r in rows], vals, left=bottom, label=k[len(what) + 1 :])
        bottom = [b + v for b, v in zip(bottom, vals)]
    if what == "mem":  # an H100 has 80 GB
        ax.axvline(80e9 / GiB, color="black", ls="--", lw=1, label="H100 memory (80 GB)")
    ax.set_xlabel("GiB per GPU" + (" per step (sent)" if what == "comm" else ""))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.invert_yaxis()
    return fig
