"""Llama 3's 4D parallelism composed: one training step of a small Llama on a [TP, CP, PP, DP] mesh (paper §3.3.2).

Every rank builds the same single-device `Transformer` (same seed), then cuts out its share:

    1. TP  splits each weight matrix over the TP group (`tp.apply_tp`)
    2. CP  gives attention its K/V all-gather (`cp.apply_cp`); the rank keeps the tokens of chunks i, 2·CP−1−i
    3. PP  keeps the layers of its pipeline stages (`pp.build_stages`: the first stage owns the embedding, the
           last the norm and output); done after TP and CP so that the stages hold the sharded modules
    4. DP  FSDP (the paper's choice) or bucketed all-reduce (`dp.DataParallel`) over the ranks that hold the same
           weights but see different tokens: the DP×CP group

Data: the global batch `tokens` (B, S+1) is the same everywhere; DP rank d takes rows d·B/DP..; CP rank c takes
its two chunks of the sequence. The loss is the sum of the token losses divided by the *global* token count
B·S, so gradients are *summed* over DP×CP (never averaged twice).

`Parallel4D(mesh, args, seq_len, ...)` holds a rank's share and its `step(tokens)` (the benchmark trains with it).
`train_step(sizes, args, tokens, ...)` runs inside each launched rank and returns this rank's loss, gradients and
updated parameters, by single-device name (TP shards stay shards). `reference_step` is the same step on one
device with the unmodified model; `compare` slices the reference like the rank's shards and returns the
largest differences. `check(...)` does all of it on N processes (`python -m minillama parallel-check`).

Shapes: B global batch, S sequence, b = B/DP local batch, s = S/CP local tokens, v = V/TP local vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from minillama.model import Transformer
from minillama.model.config import ModelArgs
from minillama.parallel import cp as cp_mod
from minillama.parallel.dp import DataParallel
from minillama.parallel.fsdp import FullyShardedDataParallel
from minillama.parallel.launch import device, launch
from minillama.parallel.mesh import Mesh
from minillama.parallel.pp import build_stages, run_schedule
from minillama.parallel.schedules import make_schedule
from minillama.parallel.tp import apply_tp, tp_slice, vocab_parallel_cross_entropy

OPTIM = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)  # AdamW of the checks


def optim_for(dtype: torch.dtype) -> dict:
    """AdamW settings of the checks. In float32 eps is 1e-6: Adam's first update lr·g/(|g| + eps) magnifies a
    gradient's rounding error by up to lr/eps, and this small model has gradients near 1e-8, where two correct
    float32 runs would otherwise differ by 1e-5 after one step."""
    return dict(OPTIM, eps=1e-6) if dtype == torch.float32 else dict(OPTIM)


def build_model(args: ModelArgs, seed: int = 0, dtype: torch.dtype = torch.float64) -> Transformer:
    """The single-device model every rank starts from (same seed -> same weights on every rank)."""
    return Transformer(args).init_weights(seed=seed).to(dtype)


def reference_step(
    args: ModelArgs, tokens: Tensor, seed: int = 0, dtype: torch.dtype = torch.float64, optim: dict | None = None
) -> dict:
    """One AdamW step on one device: {'loss', 'grads' {name: tensor}, 'params' {name: tensor}}."""
    model = build_model(args, seed, dtype)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits = cp_mod.forward(model, inputs)  # = model(inputs) without its float32 cast (kept exact in float64)
    loss = F.cross_entropy(rearrange(logits, "b s v -> (b s) v"), targets.reshape(-1))
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    torch.optim.AdamW(model.parameters(), **(optim or optim_for(dtype))).step()
    return {"loss": loss.item(), "grads": grads, "params": {n: p.detach().clone() for n, p in model.named_parameters()}}


def local_batch(tokens: Tensor, mesh: Mesh) -> tuple[Tensor, Tensor, Tensor]:
    """This rank's (inputs (b, s), targets (b, s), positions (s,)) from the global tokens (B, S+1)."""
    if tokens.shape[0] % mesh.dp:
        raise ValueError(f"global batch {tokens.shape[0]} must be divisible by DP={mesh.dp}")
    rows = rearrange(tokens, "(d b) t -> d b t", d=mesh.dp)[mesh.dp_rank]
    inputs, targets = rows[:, :-1], rows[:, 1:]
    seq_len = inputs.shape[1]
    positions = cp_mod.cp_positions(seq_len, mesh.cp_rank, mesh.cp)
    return inputs[:, positions], targets[:, positions], positions


def token_losses(logits: Tensor, targets: Tensor, mesh: Mesh) -> Tensor:
    """Cross-entropy per token (b, s); from vocabulary-split logits when TP > 1."""
    if mesh.tp > 1:
        return vocab_parallel_cross_entropy(logits, targets, mesh.tp_group)
    return F.cross_entropy(rearrange(logits, "b s v -> b v s"), targets, reduction="none")


def shard_model(model: Transformer, mesh: Mesh, seq_len: int) -> Transformer:
    """Steps 1–2: the TP shard of every weight, then context-parallel attention. In place."""
    if mesh.tp > 1:
        apply_tp(model, mesh.tp_group)
    if mesh.cp > 1:
        cp_mod.apply_cp(model, mesh.cp_group, seq_len)
    return model


def cut_pipeline(model: Transformer, mesh: Mesh, virtual_stages: int = 1) -> list:
    """Step 3: keep this rank's pipeline stages (`pp.build_stages`, which prunes the model in place)."""
    return build_stages(model, mesh.pp_rank, mesh.pp, virtual_stages)


class Parallel4D:
    """This rank's share of a `Transformer` on a [TP, CP, PP, DP] mesh, and its training step.

    PP > 1 runs `schedule` ('gpipe', '1f1b' or 'interleaved' with `virtual_stages`) over `n_microbatches`
    (default: one row of the local batch each). DP is FSDP (`dp_mode='fsdp'`, the paper) or all-reduce ('ddp').
    """

    def __init__(
        self,
        mesh: Mesh,
        args: ModelArgs,
        seq_len: int,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        dp_mode: str = "fsdp",
        optim: dict | None = None,
        schedule: str = "1f1b",
        n_microbatches: int | None = None,
        virtual_stages: int = 1,
    ):
        if dp_mode not in ("fsdp", "ddp"):
            raise ValueError(f"dp_mode must be 'fsdp' or 'ddp', got {dp_mode!r}")
        self.mesh, self.schedule, self.virtual_stages = mesh, schedule, virtual_stages
        self.n_microbatches = n_microbatches
        # TP and CP first, on the whole model: the pipeline stages then hold the already-sharded modules.
        self.device = device()  # cpu under gloo, this rank's GPU under torchrun + NCCL
        self.model = shard_model(build_model(args, seed, dtype).to(self.device), mesh, seq_len)
        self.stages = cut_pipeline(self.model, mesh, virtual_stages) if mesh.pp > 1 else None
        self.fsdp = self.ddp = None
        if mesh.dp * mesh.cp > 1:  # the DP×CP group: same weights, different tokens
            if dp_mode == "fsdp":
                self.fsdp = FullyShardedDataParallel(self.model, mesh.cp_dp_group)
            else:
                self.ddp = DataParallel(self.model, mesh.cp_dp_group)
        params = self.fsdp.parameters() if self.fsdp else list(self.model.parameters())
        self.optimizer = torch.optim.AdamW(params, **(optim or optim_for(dtype)))

    def forward_backward(self, tokens: Tensor) -> Tensor:
        """Loss of this rank's tokens (summed token losses / global token count) with its gradients, reduced
        over DP×CP (sharded under FSDP). tokens: the global batch (B, S+1)."""
        mesh = self.mesh
        inputs, targets, positions = (t.to(self.device) for t in local_batch(tokens, mesh))
        n_tokens = targets.numel() * mesh.dp * mesh.cp  # global token count B·S
        if self.stages is None:
            logits = cp_mod.forward(self.model, inputs, positions)
            loss = token_losses(logits, targets, mesh).sum() / n_tokens
            loss.backward()
        else:
            loss = self.run_pipeline(inputs, targets, positions, n_tokens)
        if self.fsdp:
            self.fsdp.reduce_scatter_grads()
        elif self.ddp:
            self.ddp.finish()
        return loss.detach()

    def run_pipeline(self, inputs: Tensor, targets: Tensor, positions: Tensor, n_tokens: int) -> Tensor:
        """Forward and backward of the local batch as micro-batches through the pipeline schedule."""
        m = self.n_microbatches or inputs.shape[0]
        if inputs.shape[0] % m:
            raise ValueError(f"local batch {inputs.shape[0]} must be divisible by {m} micro-batches")
        plan = make_schedule(self.schedule, self.mesh.pp, m, self.virtual_stages)
        if self.ddp:
            self.ddp.sync = False  # gradients accumulate over micro-batches; finish() reduces them once

        def loss_fn(logits: Tensor, tgt: Tensor) -> Tensor:
            return token_losses(logits, tgt, self.mesh).sum()

        split = lambda x: list(rearrange(x, "(m b) s -> m b s", m=m))  # noqa: E731
        return run_schedule(
            self.stages,
            plan,
            split(inputs),
            split(targets),
            loss_fn,
            self.mesh.pp_group,
            n_tokens=n_tokens,
            positions=positions,
        )

    def optimizer_step(self) -> None:
        """AdamW on this rank's parameters (FSDP: its shards), then drop gradients (and FSDP's full weights)."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.fsdp:
            self.fsdp.reshard()

    def step(self, tokens: Tensor) -> float:
        """One training step on the global batch; returns the global loss (the same on every rank)."""
        loss = self.forward_backward(tokens)
        self.optimizer_step()
        return self.global_loss(loss)

    def global_loss(self, loss: Tensor) -> float:
        total = loss.clone().double()
        dist.all_reduce(total, group=self.mesh.cp_dp_group)  # every PP and TP rank already holds its share's
        return total.item()

    def grads(self) -> dict[str, Tensor]:
        """This rank's gradients by single-device name (TP shards stay shards; FSDP shards gathered)."""
        grads = self.fsdp.full_grads() if self.fsdp else {n: p.grad for n, p in self.model.named_parameters()}
        return {n: g.detach().cpu().clone() for n, g in grads.items()}

    def params(self) -> dict[str, Tensor]:
        """This rank's parameters by single-device name (FSDP shards gathered)."""
        params = self.fsdp.full_parameters() if self.fsdp else dict(self.model.named_parameters())
        return {n: p.detach().cpu().clone() for n, p in params.items()}


def train_step(
    sizes: dict,
    args: ModelArgs,
    tokens: Tensor,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    dp_mode: str = "fsdp",
    optim: dict | None = None,
    **pipeline,
) -> dict:
    """One training step on this rank's share of the mesh `sizes` {'tp','cp','pp','dp'} (inside a launch).

    Returns {'loss': global loss, 'grads', 'params' (after AdamW): this rank's tensors by single-device name,
    'coords'}. `pipeline`: schedule, n_microbatches, virtual_stages (see `Parallel4D`).
    """
    mesh = Mesh(**sizes)
    run = Parallel4D(mesh, args, tokens.shape[1] - 1, seed, dtype, dp_mode, optim, **pipeline)
    loss = run.forward_backward(tokens)
    grads = run.grads()
    run.optimizer.step()
    params = run.params()
    return {"loss": run.global_loss(loss), "grads": grads, "params": params, "coords": mesh.coords}


def compare(result: dict, reference: dict, sizes: dict) -> dict[str, float]:
    """Largest |difference| of loss, gradients and updated parameters between a rank and the reference."""
    tp, tp_rank = sizes.get("tp", 1), result["coords"]["tp"]
    out = {"loss": abs(result["loss"] - reference["loss"]), "grads": 0.0, "params": 0.0, "n_tensors": 0}
    for key in ("grads", "params"):
        for name, mine in result[key].items():
            ref = tp_slice(name, reference[key][name], tp_rank, tp)
            if ref.shape != mine.shape:
                raise ValueError(f"{name}: rank holds {tuple(mine.shape)}, reference slice {tuple(ref.shape)}")
            out[key] = max(out[key], (mine.double() - ref.double()).abs().max().item())
        out["n_tensors"] += len(result[key])
    out["names"] = sorted(result["params"])
    return out


def _check_rank(sizes, args, tokens, reference, seed, dtype, dp_mode, optim, pipeline):
    return compare(train_step(sizes, args, tokens, seed, dtype, dp_mode, optim, **pipeline), reference, sizes)


def check(
    tp: int = 1,
    cp: int = 1,
    pp: int = 1,
    dp: int = 1,
    args: ModelArgs | None = None,
    batch: int = 4,
    seq_len: int = 16,
    dtype: torch.dtype = torch.float64,
    dp_mode: str = "fsdp",
    seed: int = 0,
    optim: dict | None = None,
    timeout: float = 120,
    schedule: str = "1f1b",
    n_microbatches: int | None = None,
    virtual_stages: int = 1,
) -> dict[str, float]:
    """Run one step on tp·cp·pp·dp processes and on one device; the largest differences over all ranks."""
    args = args or small_args()
    validate_layout(args, tp, cp, pp, dp, batch, seq_len, n_microbatches, virtual_stages)
    gen = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, args.vocab_size, (batch, seq_len + 1), generator=gen)
    reference = reference_step(args, tokens, seed, dtype, optim)
    sizes = {"tp": tp, "cp": cp, "pp": pp, "dp": dp}
    per_rank = launch(
        _check_rank,
        math.prod(sizes.values()),
        sizes,
        args,
        tokens,
        reference,
        seed,
        dtype,
        dp_mode,
        optim,
        dict(schedule=schedule, n_microbatches=n_microbatches, virtual_stages=virtual_stages),
        timeout=timeout,
    )
    return summarize(per_rank, reference)


def validate_layout(
    args: ModelArgs,
    tp: int,
    cp: int,
    pp: int,
    dp: int,
    batch: int,
    seq_len: int,
    n_microbatches: int | None = None,
    virtual_stages: int = 1,
) -> None:
    """Raise ValueError, saying what to change, for sizes this model and batch cannot be split into."""
    tp_splits = (args.n_heads, args.n_kv_heads, args.ffn_hidden_dim, args.vocab_size)
    problems = [
        f"TP={tp} must divide {what}={n}"
        for what, n in zip(("n_heads", "n_kv_heads", "ffn hidden size", "vocab_size"), tp_splits)
        if n % tp
    ]
    if problems:
        fits = [t for t in range(1, args.n_kv_heads + 1) if all(n % t == 0 for n in tp_splits)]
        problems[-1] += f" (TP sizes that fit this model: {fits})"
    if seq_len % (2 * cp):
        problems.append(f"the sequence ({seq_len}) must be divisible by 2·CP={2 * cp}")
    if batch % dp:
        problems.append(f"the global batch ({batch}) must be divisible by DP={dp}")
    elif n_microbatches and (batch // dp) % n_microbatches:
        problems.append(f"the local batch ({batch // dp}) must be divisible by {n_microbatches} micro-batches")
    if pp * virtual_stages > args.n_layers + 2:
        problems.append(f"PP·V={pp * virtual_stages} stages need at least {pp * virtual_stages - 2} layers")
    if pp * virtual_stages > 1 and args.tie_word_embeddings:
        problems.append("pipelining needs untied embeddings (tie_word_embeddings=False)")
    if problems:
        raise ValueError("; ".join(problems))


def summarize(per_rank: list[dict], reference: dict) -> dict[str, float]:
    """Worst differences over ranks; refuses a run where some single-device tensor is held by no rank."""
    missing = set(reference["params"]) - {n for r in per_rank for n in r["names"]}
    if missing:
        raise AssertionError(f"no rank holds {sorted(missing)}: the parallel model lost part of the model")
    worst = {k: max(r[k] for r in per_rank) for k in ("loss", "grads", "params")}
    worst["n_tensors"] = sum(r["n_tensors"] for r in per_rank)
    return worst


def small_args(**overrides) -> ModelArgs:
    """A small Llama for the checks: dim 64, 4 layers, 4 query / 2 key-value heads, vocabulary 256, untied."""
    base = dict(
        dim=64,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=256,
        multiple_of=32,
        ffn_dim_multiplier=None,
        max_seq_len=128,
        use_scaled_rope=False,
        tie_word_embeddings=False,
    )
    return ModelArgs(**{**base, **overrides})
