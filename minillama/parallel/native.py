"""The graduation path: the same Llama parallelized with PyTorch's own APIs (what torchtitan does in production).

Each hand-written module of this package has a native counterpart; all but context parallelism run on a CPU
with gloo (PARALLEL_NOTES.md), and the tests check that they give the same numbers as one device and as the
hand-written code (paper §3.3.2 for the layouts).

| hand-written (minillama.parallel) | native (torch.distributed)                                             |
|-----------------------------------|------------------------------------------------------------------------|
| `tp.apply_tp`                     | DTensor: `parallelize_module` with `ColwiseParallel` / `RowwiseParallel` |
| `fsdp.FullyShardedDataParallel`   | FSDP2: `fully_shard` per block, then the root                           |
| `pp.build_stages` + `run_schedule`| `torch.distributed.pipelining`: `PipelineStage` + `Schedule{GPipe, 1F1B, ...}`  |
| `cp.apply_cp`                     | `torch.distributed.tensor.experimental.context_parallel` (GPU only)     |

Context parallelism does not run on a CPU with torch 2.13: the SDPA sharding rules cover the CUDA flash /
efficient attention kernels, not the CPU one, and the math fallback mixes Tensor and DTensor. On GPUs it goes
around the training step, after TP/FSDP and before the forward (see `context_parallel_step`), with the token,
target and RoPE buffers it should shard along their sequence dimension; torch then splits them into 2·CP chunks
with the same load balancing as Llama 3 (rank i holds chunks i and 2·CP−1−i) and exchanges K/V inside SDPA.

Meshes: build a `DeviceMesh` with `init_device_mesh("cpu", (dp, pp, cp, tp), mesh_dim_names=(...))` or
`minillama.parallel.mesh.Mesh.device_mesh()`; pass the 1-D sub-mesh of a dimension (`mesh["tp"]`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minillama.parallel.fourd import build_model, optim_for, reference_step, small_args
from minillama.parallel.launch import launch
from minillama.parallel.pp import PipelineStage, build_stages, sum_cross_entropy

__all__ = [
    "tp_plan",
    "native_tp",
    "native_fsdp",
    "native_pipeline",
    "run_native_pipeline",
    "context_parallel_step",
    "full_tensors",
    "full_grads",
    "check_native",
    "SCHEDULES",
]


def tp_plan(model: nn.Module) -> dict:
    """Megatron's split as a DTensor plan, the layout torchtitan's `apply_tp` uses (without sequence parallel):
    wq/wk/wv and w1/w3 column-wise (heads and hidden units split), wo and w2 row-wise (an all-reduce after),
    the embedding split over the vocabulary and the output column-wise with the logits gathered back."""
    # torch's native parallel APIs load only on this path (slow imports, some absent on older torch)
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    plan = {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate()),
        "output": ColwiseParallel(output_layouts=Replicate()),
    }
    layer_ids = model.layers.keys() if isinstance(model.layers, nn.ModuleDict) else range(len(model.layers))
    for i in layer_ids:
        for name in ("attention.wq", "attention.wk", "attention.wv", "feed_forward.w1", "feed_forward.w3"):
            plan[f"layers.{i}.{name}"] = ColwiseParallel()
        for name in ("attention.wo", "feed_forward.w2"):
            plan[f"layers.{i}.{name}"] = RowwiseParallel()
    return plan


def native_tp(model: nn.Module, tp_mesh) -> nn.Module:
    """Tensor parallel with DTensor, in place: weights become DTensors sharded over `tp_mesh` (1-D).

    The attention code needs no change: it reshapes with `e=head_dim`, so it sees n_heads/TP local heads.
    KV heads are split too, so TP must divide n_kv_heads (8 in every Llama 3 model: TP ≤ 8, as in the paper).
    """
    # torch's native parallel APIs load only on this path (slow imports, some absent on older torch)
    from torch.distributed.tensor.parallel import parallelize_module

    tp = tp_mesh.size()
    if model.args.n_kv_heads % tp or model.args.vocab_size % tp:
        raise ValueError(
            f"TP={tp} must divide n_kv_heads ({model.args.n_kv_heads}) and vocab_size ({model.args.vocab_size})"
        )
    return parallelize_module(model, tp_mesh, tp_plan(model))


def native_fsdp(model: nn.Module, dp_mesh, reshard_after_forward: bool = False) -> nn.Module:
    """FSDP2, in place: the embedding, each block, the final norm and the output are units of their own
    (as in torchtitan), then the root; every weight is sharded over `dp_mesh`. With tied embeddings (the CPU
    presets, Llama 3.2 1B/3B) the embedding and the output are left to the root unit.

    Because each unit gathers its own weights, any code that calls the modules (`model(...)`, a pipeline stage)
    works. `reshard_after_forward=False` is Llama 3's choice (the gathered weights stay for the backward).
    Gradients are averaged over the mesh: give each rank the mean loss of its own, equally sized, batch part.
    """
    # torch's native parallel APIs load only on this path (slow imports, some absent on older torch)
    from torch.distributed.fsdp import fully_shard

    layers = model.layers.values() if isinstance(model.layers, nn.ModuleDict) else model.layers
    units = [model.tok_embeddings, *layers, model.norm, model.output]
    if getattr(getattr(model, "args", None), "tie_word_embeddings", False):
        # a tied output shares the embedding's weight, and a weight belongs to one unit: both stay with the root
        units = [*layers, model.norm]
    for unit in units:
        if unit is not None:
            fully_shard(unit, mesh=dp_mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=dp_mesh, reshard_after_forward=reshard_after_forward)
    return model


def _schedule_classes():
    # torch's native parallel APIs load only on this path (slow imports, some absent on older torch)
    from torch.distributed.pipelining import Schedule1F1B, ScheduleGPipe, ScheduleInterleaved1F1B, ScheduleLoopedBFS

    return {
        "gpipe": ScheduleGPipe,
        "1f1b": Schedule1F1B,
        "interleaved": ScheduleInterleaved1F1B,
        "looped_bfs": ScheduleLoopedBFS,
    }


SCHEDULES = ("gpipe", "1f1b", "interleaved", "looped_bfs")


def native_pipeline(
    model: nn.Module,
    pp_rank: int,
    pp_size: int,
    schedule: str,
    n_microbatches: int,
    n_tokens: int,
    virtual_stages: int = 1,
    group=None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = sum_cross_entropy,
    device=None,
):
    """A `torch.distributed.pipelining` schedule over this rank's stages.

    The stages are the hand-written `pp.PipelineStage`s (same split: embedding and output count as a layer),
    wrapped in torch's `PipelineStage`, which handles the send/recv; the schedule class does the ordering.
    Each micro-batch's loss is loss_fn / n_tokens (the global token count) and `scale_grads=False`, the same
    normalisation as `pp.run_schedule`. Returns the schedule; run it with `run_native_pipeline`.
    """
    # torch's native parallel APIs load only on this path (slow imports, some absent on older torch)
    from torch.distributed.pipelining import PipelineStage as TorchStage

    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: choose one of {SCHEDULES}")
    multi = schedule in ("interleaved", "looped_bfs")
    if not multi and virtual_stages != 1:
        raise ValueError(f"{schedule} runs one stage per rank: use 'interleaved' or 'looped_bfs' for V > 1")
    device = device or torch.device("cpu")
    ours = build_stages(model, pp_rank, pp_size, virtual_stages)
    stages = [TorchStage(st, st.stage_index, st.n_stages, device, group=group) for st in ours]

    def loss(logits: Tensor, target: Tensor) -> Tensor:
        return loss_fn(logits, target) / n_tokens

    cls = _schedule_classes()[schedule]
    return cls(stages if multi else stages[0], n_microbatches, loss_fn=loss, scale_grads=False)


def run_native_pipeline(sched, tokens: Tensor, targets: Tensor, pp_rank: int, pp_size: int) -> Tensor | None:
    """One step: the first rank feeds the whole batch (torch splits it into micro-batches along dim 0), the last
    rank the targets; returns the summed loss on the last rank, None elsewhere."""
    losses: list[Tensor] = []
    first_holder = pp_rank == 0
    last_holder = pp_rank == pp_size - 1  # stage S−1 lives on rank (S−1) % pp = pp−1
    kwargs = {"target": targets, "losses": losses} if last_holder else {}
    if first_holder:
        sched.step(tokens, **kwargs)
    else:
        sched.step(**kwargs)
    return torch.stack(losses).sum() if last_holder else None


def context_parallel_step(
    model: nn.Module,
    cp_mesh,
    tokens: Tensor,
    targets: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = sum_cross_entropy,
) -> Tensor:
    """Native context parallelism for one forward/backward: GPUs only (raises RuntimeError on a CPU mesh).

    On a GPU mesh this shards tokens (b, S), targets (b, S) and the RoPE table (S, e/2, 2) along the sequence
    into 2·CP load-balanced chunks in place, runs the model on the local chunks (SDPA's ring/all-gather of K/V is
    done by torch), and restores the buffers afterwards. Returns this rank's summed loss; normalise by the
    global token count and all-reduce over the CP group to log it. On CPUs use `minillama.parallel.cp`.
    """
    if cp_mesh.device_type != "cuda":
        raise RuntimeError(
            "torch's context_parallel needs CUDA SDPA kernels (flash / efficient attention); on a "
            "CPU it fails (PARALLEL_NOTES.md). Use the hand-written minillama.parallel.cp here."
        )
    # torch's native parallel APIs load only on this path (slow imports, some absent on older torch)
    from torch.distributed.tensor.experimental import context_parallel

    seq = tokens.shape[1]
    freqs = model.freqs_cis
    model.freqs_cis = freqs[:seq].clone()  # a buffer exactly S long, so it can be sharded with the tokens
    try:
        with context_parallel(cp_mesh, buffers=[tokens, targets, model.freqs_cis], buffer_seq_dims=[1, 1, 0]):
            stage = PipelineStage(model, 0, 1, range(model.args.n_layers))  # the whole model, no float32 cast
            loss = loss_fn(stage(tokens, torch.arange(tokens.shape[1], device=tokens.device)), targets)
            loss.backward()
    finally:
        model.freqs_cis = freqs
    return loss.detach()


def full_tensors(model: nn.Module) -> dict[str, Tensor]:
    """name -> the full (unsharded) value of every parameter (DTensors gathered), for comparisons."""
    out = {}
    for name, p in model.named_parameters():
        out[name] = p.full_tensor() if hasattr(p, "full_tensor") else p.detach()
    return out


def full_grads(model: nn.Module) -> dict[str, Tensor]:
    """name -> the full gradient of every parameter (DTensor gradients gathered)."""
    out = {}
    for name, p in model.named_parameters():
        g = p.grad
        out[name] = g.full_tensor() if hasattr(g, "full_tensor") else g
    return out


def _native_rank(
    kind: str, args, tokens: Tensor, reference: dict, dtype, schedule: str, virtual_stages: int, n_microbatches: int
) -> dict:
    """Inside a launched rank: one AdamW step with a native API; the largest differences with `reference`."""
    # torch's native parallel APIs load only on this path (slow imports, some absent on older torch)
    import torch.distributed as dist

    # torch's native parallel APIs load only on this path (slow imports, some absent on older torch)
    from torch.distributed.device_mesh import init_device_mesh

    rank, world = dist.get_rank(), dist.get_world_size()
    model = build_model(args, 0, dtype)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    loss = None
    if kind in ("tp", "fsdp"):
        mesh = init_device_mesh("cpu", (world,), mesh_dim_names=(kind,))
        if kind == "tp":
            native_tp(model, mesh)
        else:  # each rank its rows of the batch; FSDP averages the gradients over the ranks
            native_fsdp(model, mesh)
            rows = slice(rank * len(inputs) // world, (rank + 1) * len(inputs) // world)
            inputs, targets = inputs[rows], targets[rows]
        whole = PipelineStage(model, 0, 1, range(args.n_layers))  # the model without its float32 cast
        loss = F.cross_entropy(whole(inputs).flatten(0, 1), targets.flatten())
        loss.backward()
        if kind == "fsdp":
            dist.all_reduce(loss := loss.detach().clone())
            loss /= world
    elif kind == "pipeline":
        sched = native_pipeline(
            model, rank, world, schedule, n_microbatches, targets.numel(), virtual_stages=virtual_stages
        )
        loss = run_native_pipeline(sched, inputs, targets, rank, world)
    else:
        raise ValueError(f"kind must be 'tp', 'fsdp' or 'pipeline', got {kind!r}")
    grads = full_grads(model)
    torch.optim.AdamW(model.parameters(), **optim_for(dtype)).step()
    params = full_tensors(model)
    diff = lambda a, b: max((a[k].double() - b[k].double()).abs().max().item() for k in a)  # noqa: E731
    return {
        "loss": abs(loss.item() - reference["loss"]) if loss is not None else 0.0,
        "grads": diff(grads, reference["grads"]),
        "params": diff(params, reference["params"]),
        "names": sorted(params),
    }


def check_native(
    kind: str,
    world_size: int = 2,
    schedule: str = "1f1b",
    virtual_stages: int = 1,
    n_microbatches: int = 2,
    batch: int = 4,
    seq_len: int = 16,
    dtype=torch.float64,
    args=None,
    timeout: float = 120,
) -> dict[str, float]:
    """One training step with a native API ('tp', 'fsdp' or 'pipeline' with a torch `schedule`) on
    `world_size` CPU processes against one device (`fourd.reference_step`): the largest |differences|."""
    args = args or small_args()
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, args.vocab_size, (batch, seq_len + 1), generator=gen)
    reference = reference_step(args, tokens, 0, dtype)
    per_rank = launch(
        _native_rank,
        world_size,
        kind,
        args,
        tokens,
        reference,
        dtype,
        schedule,
        virtual_stages,
        n_microbatches,
        timeout=timeout,
    )
    missing = set(reference["params"]) - {n for r in per_rank for n in r["names"]}
    if missing:
        raise AssertionError(f"no rank holds {sorted(missing)}")
    return {k: max(r[k] for r in per_rank) for k in ("loss", "grads", "params")}
