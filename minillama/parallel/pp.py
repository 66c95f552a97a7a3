"""Pipeline parallelism with plain point-to-point messages (paper §3.3.2), running any schedule of `schedules`.

The model's layers are cut into `pp · V` stages; rank p holds stages p, p + pp, … (V chunks). A micro-batch's
activations travel forward stage by stage (`isend`/`irecv` of a (b, s, d) tensor), its gradients travel back the
same way, and each rank follows its list of steps from `schedules.py`. As in the paper, the embedding and the
output projection each count as one layer, so the first and the last stage hold one transformer layer less
(`stage_layers`): with 126 layers on 16 ranks × 8 chunks, the first chunk is only the embedding and the last one only
the norm, the output projection and the loss.

    model = Transformer(args)                        # the same initial weights on every rank
    stages = build_stages(model, pp_rank, pp, V)     # this rank's chunks; `model` is pruned to them, in place
    opt = torch.optim.AdamW(model.parameters())      # exactly this rank's parameters, with their global names
    sched = schedules.interleaved(pp, M, V)          # or gpipe / one_f_one_b; simulate(sched) checks it first
    loss = run_schedule(stages, sched, inputs, targets)   # inputs/targets: lists of M (b, s) micro-batches
    opt.step()                                       # gradients were accumulated over the M micro-batches

Exactness: each micro-batch's loss is its summed cross-entropy divided by the *global* token count
(`n_tokens`, default: the tokens of all M micro-batches here), so the accumulated gradients are those of the
mean loss over the whole batch on one device. Under data/context parallelism pass the token count of the whole
DP×CP batch and sum gradients over DP×CP (mixing per-rank means with sums scales the gradients wrongly).

Communication: sends are asynchronous (`isend`, waited for at the end); the receive for the next step is posted
before the current step runs (so it overlaps compute), in the order of this rank's steps. Each message carries a
tag unique to (stage, micro-batch, direction): with two ranks the interleaved schedule receives some messages
in a different order than they were sent (`schedules.messages`), and tags keep them apart.

Inside a 4D mesh (`minillama.parallel.mesh.Mesh`): pass `group=mesh.pp_group`; ranks are then *group* ranks
(0..pp−1, `mesh.pp_rank`) and messages only travel between this rank's pipeline neighbours. Apply tensor / context
parallelism to the model before or after `build_stages` (the layers keep their names and their forward signature
`layer(h, freqs_cis)`); give a vocab-parallel `loss_fn` under TP and the CP positions (`positions=`) under CP.
Every rank of the pipeline needs the micro-batch `inputs` (only their shapes off the first stage) and the last
stage needs `targets`. `minillama.parallel.fourd.Parallel4D` composes it this way with TP, CP and FSDP.

Timing: `run_schedule(..., trace=[])` records when each step ran; `measure_schedule(name, pp, M, V)` runs a
schedule on `pp` CPU processes and returns the measured `schedules.Timeline`, to plot next to the simulated one.

Shapes: b micro-batch size, s sequence, d dim, v vocab.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from minillama.model import Transformer
from minillama.model.config import ModelArgs
from minillama.parallel.launch import launch
from minillama.parallel.schedules import Schedule, Step, make_schedule, timeline_from_trace, validate

__all__ = ["stage_layers", "PipelineStage", "build_stages", "run_schedule", "sum_cross_entropy", "measure_schedule"]


def stage_layers(n_layers: int, n_stages: int) -> list[range]:
    """Which transformer layers each of `n_stages` stages holds, counting the embedding and the output as one
    layer each (Llama 3: "one transformer layer is removed from the first and the last stage").

    The n_layers + 2 slots are spread evenly (extra slots go to the stages after the first). E.g. 2 layers on 4
    stages: [], [0], [1], []; 6 layers on 4 stages: [0], [1, 2], [3, 4], [5].
    """
    if n_stages < 1:
        raise ValueError(f"need at least one stage, got {n_stages}")
    slots = n_layers + 2
    if slots < n_stages:
        raise ValueError(
            f"{n_layers} layers + embedding + output cannot fill {n_stages} stages: use at most "
            f"{slots} stages (pp · virtual_stages) or a deeper model"
        )
    base, extra = divmod(slots, n_stages)
    sizes = [base + (1 if 1 <= s <= extra else 0) for s in range(n_stages)]  # extra <= n_stages - 1
    sizes[0] -= 1  # the embedding
    sizes[-1] -= 1  # the norm + output (+ loss)
    out, start = [], 0
    for size in sizes:
        out.append(range(start, start + size))
        start += size
    assert start == n_layers
    return out


class PipelineStage(nn.Module):
    """One stage: [tok_embeddings] + some blocks + [norm, output]. Holds the model's own modules (no copies).

    forward(x, positions=None): tokens (b, s) int64 on the first stage, hidden (b, s, d) otherwise ->
    hidden (b, s, d), or logits (b, s, v) on the last stage (in the model's dtype: no float32 cast, so float64
    runs stay exact). `positions` (s,) are the tokens' true positions for RoPE (default 0..s−1; CP passes its own).
    """

    def __init__(self, model: nn.Module, stage_index: int, n_stages: int, layer_ids: Sequence[int]):
        super().__init__()
        self.stage_index, self.n_stages = stage_index, n_stages
        self.is_first, self.is_last = stage_index == 0, stage_index == n_stages - 1
        self.layer_ids = list(layer_ids)
        self.tok_embeddings = model.tok_embeddings if self.is_first else None
        self.layers = nn.ModuleList(_layer(model, i) for i in self.layer_ids)
        self.norm = model.norm if self.is_last else None
        self.output = model.output if self.is_last else None
        self.dim = model.args.dim
        self.rotations = model.rotations  # RoPE for the stage's tokens; the table is shared, not copied

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        h = self.tok_embeddings(x) if self.is_first else x
        freqs_cis = self.rotations(x.shape[1], positions=positions)
        for layer in self.layers:
            h = layer(h, freqs_cis)
        return self.output(self.norm(h)) if self.is_last else h

    def extra_repr(self) -> str:
        parts = (
            (["tok_embeddings"] if self.is_first else [])
            + [f"layers {self.layer_ids}"]
            + (["norm", "output"] if self.is_last else [])
        )
        return f"stage {self.stage_index}/{self.n_stages}: " + " + ".join(parts)


def _layer(model: nn.Module, i: int) -> nn.Module:
    return model.layers[str(i)] if isinstance(model.layers, nn.ModuleDict) else model.layers[i]


def build_stages(
    model: nn.Module, pp_rank: int, pp_size: int, virtual_stages: int = 1, prune: bool = True
) -> list[PipelineStage]:
    """This rank's V stages (stage v·pp + pp_rank for v = 0..V−1), made from `model`'s modules.

    With `prune` (default) the model is cut down in place to what this rank holds: `model.layers` becomes a
    ModuleDict keyed by the global layer number (so parameter names stay `layers.{i}.…`, as on one device),
    and `tok_embeddings` / `norm` / `output` become None on the ranks that do not hold them. Nothing is
    deep-copied (a module holding a process group cannot be).
    """
    if not 0 <= pp_rank < pp_size:
        raise ValueError(f"pp_rank {pp_rank} outside a pipeline of {pp_size} ranks")
    if getattr(model.args, "tie_word_embeddings", False) and pp_size * virtual_stages > 1:
        raise ValueError(
            "tied embeddings live on the first and the last stage: untie them "
            "(tie_word_embeddings=False) before pipelining"
        )
    n_stages = pp_size * virtual_stages
    per_stage = stage_layers(model.args.n_layers, n_stages)
    mine = [v * pp_size + pp_rank for v in range(virtual_stages)]
    stages = [PipelineStage(model, s, n_stages, per_stage[s]) for s in mine]
    if prune:
        kept = [i for s in mine for i in per_stage[s]]
        model.layers = nn.ModuleDict({str(i): _layer(model, i) for i in kept})
        if 0 not in mine:
            model.tok_embeddings = None
        if n_stages - 1 not in mine:
            model.norm = None
            model.output = None
    return stages


def sum_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Summed token cross-entropy: logits (b, s, v), targets (b, s) with -100 ignored -> scalar."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum", ignore_index=-100)


def run_schedule(
    stages: Sequence[PipelineStage],
    schedule: Schedule,
    inputs: Sequence[Tensor],
    targets: Sequence[Tensor] | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = sum_cross_entropy,
    group=None,
    *,
    n_tokens: int | None = None,
    positions: Tensor | None = None,
    broadcast_loss: bool = True,
    trace: list | None = None,
) -> Tensor:
    """Run this rank's steps of `schedule` (forward and backward of every micro-batch); return the loss.

    stages: this rank's `PipelineStage`s (from `build_stages`); schedule: from `schedules` with the same pp, V.
    inputs: M micro-batches of tokens (b, s) (every rank: the shapes size the receive buffers);
    targets: M (b, s) targets (needed on the last stage). loss_fn(logits, targets) -> summed loss.
    n_tokens: the normaliser, default the non-ignored target tokens of all M micro-batches (pass the DP×CP total
    under data/context parallelism). group: the pipeline's process group (default: the whole job).
    Returns the batch loss Σ_m loss_fn(m) / n_tokens (0-dim); with `broadcast_loss` every rank gets it, else only
    the last stage (others return 0). Gradients are accumulated into `.grad`; zero them before, step after.
    trace: a list that receives (step, start, end) per step, in `time.perf_counter()` seconds (waits included
    in neither), for `schedules.timeline_from_trace`.
    """
    pp = dist.get_world_size(group) if dist.is_initialized() else 1
    rank = dist.get_rank(group) if dist.is_initialized() else 0
    if schedule.pp != pp:
        raise ValueError(f"schedule made for pp={schedule.pp} on a pipeline group of {pp} ranks")
    if len(inputs) != schedule.n_microbatches:
        raise ValueError(f"{len(inputs)} micro-batches given, the schedule has {schedule.n_microbatches}")
    by_index = {st.stage_index: st for st in stages}
    if sorted(by_index) != [v * pp + rank for v in range(schedule.virtual_stages)] or any(
        st.n_stages != schedule.n_stages for st in stages
    ):
        raise ValueError(
            f"rank {rank} holds stages {sorted(by_index)} of {stages[0].n_stages}, the schedule wants "
            f"{[v * pp + rank for v in range(schedule.virtual_stages)]} of {schedule.n_stages}: "
            f"build_stages with the schedule's pp and virtual_stages"
        )
    validate(schedule)
    holds_last = schedule.n_stages - 1 in by_index
    if holds_last and targets is None:
        raise ValueError("the last stage needs the targets")
    if n_tokens is None:
        if targets is None:
            raise ValueError("pass n_tokens (the global token count) on ranks without targets")
        n_tokens = int(sum((t != -100).sum() for t in targets))
    any_stage = stages[0]
    dtype = next(any_stage.parameters()).dtype
    device = next(any_stage.parameters()).device
    m_count = schedule.n_microbatches

    def tag(step: Step) -> int:  # unique per message; forward activations even, gradients odd
        return (step.stage * m_count + step.microbatch) * 2 + (step.kind == "B")

    def peer(stage: int) -> int:
        return schedule.rank_of(stage)

    local: dict[Step, Tensor] = {}  # messages between two stages on this same rank (pp = 1 with V > 1)
    pending_sends: list[tuple[dist.Work, Tensor]] = []

    def source(step: Step) -> Step | None:
        """The step whose result `step` receives (None: the input is local data or nothing)."""
        if step.kind == "F":
            return Step(step.stage - 1, step.microbatch, "F") if step.stage > 0 else None
        return Step(step.stage + 1, step.microbatch, "B") if step.stage < schedule.n_stages - 1 else None

    def post_recv(step: Step):
        src = source(step)
        if src is None or peer(src.stage) == rank:
            return None
        b, s = inputs[step.microbatch].shape[:2]
        buf = torch.empty(b, s, any_stage.dim, dtype=dtype, device=device)
        return buf, dist.irecv(buf, group=group, group_src=peer(src.stage), tag=tag(src))

    def send(step: Step, tensor: Tensor, dst_stage: int) -> None:
        tensor = tensor.detach().contiguous()
        if peer(dst_stage) == rank:
            local[step] = tensor
        else:
            pending_sends.append((dist.isend(tensor, group=group, group_dst=peer(dst_stage), tag=tag(step)), tensor))

    def received(step: Step, posted) -> Tensor:
        if posted is None:
            return local.pop(source(step))
        buf, work = posted
        work.wait()
        return buf

    saved: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}  # (stage, mb) -> (input, output or loss)
    total = torch.zeros((), dtype=torch.float64)
    steps = [Step(*s) for s in schedule.steps[rank]]
    posted = post_recv(steps[0]) if steps else None
    for k, step in enumerate(steps):
        current, posted = posted, (post_recv(steps[k + 1]) if k + 1 < len(steps) else None)
        stage = by_index[step.stage]
        if step.kind == "F":
            if stage.is_first:
                x = inputs[step.microbatch].to(device)
            else:
                x = received(step, current).requires_grad_()
            start = time.perf_counter()
            out = stage(x, positions)
            if stage.is_last:
                out = loss_fn(out, targets[step.microbatch].to(device)) / n_tokens
                total += out.detach().double().cpu()
            else:
                send(step, out, step.stage + 1)
            saved[(step.stage, step.microbatch)] = (x, out)
        else:
            x, out = saved.pop((step.stage, step.microbatch))
            grad = None if stage.is_last else received(step, current)
            start = time.perf_counter()
            torch.autograd.backward(out, grad)
            if not stage.is_first:
                send(step, x.grad, step.stage - 1)
        if trace is not None:
            trace.append((step, start, time.perf_counter()))
    for work, _ in pending_sends:
        work.wait()
    if saved or local:
        raise RuntimeError(f"rank {rank}: {len(saved)} forwards without backward, {len(local)} unread messages")
    if broadcast_loss and pp > 1:
        dist.broadcast(total, group=group, group_src=schedule.rank_of(schedule.n_stages - 1))
    return total


def _traced_step(
    schedule_name: str, virtual_stages: int, n_microbatches: int, args, batch: int, seq_len: int, repeats: int
) -> list:
    """Inside a launched rank: run the schedule `repeats` times on a fresh model, return the last run's trace."""
    rank, pp = dist.get_rank(), dist.get_world_size()
    model = Transformer(args).init_weights(seed=0)
    stages = build_stages(model, rank, pp, virtual_stages)
    sched = make_schedule(schedule_name, pp, n_microbatches, virtual_stages)
    tokens = torch.randint(
        0, args.vocab_size, (n_microbatches * batch, seq_len + 1), generator=torch.Generator().manual_seed(0)
    )
    inputs, targets = list(tokens[:, :-1].chunk(n_microbatches)), list(tokens[:, 1:].chunk(n_microbatches))
    trace: list = []
    for _ in range(repeats):  # the first run warms up allocators and kernels
        trace.clear()
        dist.barrier()
        run_schedule(stages, sched, inputs, targets, trace=trace)
    return trace


def measure_schedule(
    schedule_name: str,
    pp: int,
    n_microbatches: int,
    virtual_stages: int = 1,
    args=None,
    batch: int = 2,
    seq_len: int = 64,
    repeats: int = 2,
):
    """Run a schedule for real on `pp` CPU processes and return its measured `schedules.Timeline` (wall-clock
    seconds of each step on each rank), to draw with `plot_schedule` next to the simulated one."""
    args = args or ModelArgs.from_preset("tiny", tie_word_embeddings=False)
    traces = launch(_traced_step, pp, schedule_name, virtual_stages, n_microbatches, args, batch, seq_len, repeats)
    return timeline_from_trace(make_schedule(schedule_name, pp, n_microbatches, virtual_stages), traces)
