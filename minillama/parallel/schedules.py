"""Pipeline schedules as plain data: generate them, simulate them, print them and draw them.

Paper: §3.3.2 ("Pipeline parallelism", Figure 6). A pipeline of `pp` ranks holds
`pp · V` *stages* (V "virtual stages" per rank, also called chunks): stage `s` lives on rank `s % pp` as its
chunk `s // pp`, so a micro-batch visits rank 0, 1, …, pp−1, then rank 0 again with its next chunk, and so on.

A schedule is, for every rank, the ordered list of the steps it runs: `Step(stage, microbatch, kind)` with kind
'F' (forward) or 'B' (backward). Nothing else is needed to run it (`minillama.parallel.pp.run_schedule`): a rank
receives a step's input just before the step and sends its output right after.

- `gpipe(pp, M, V=1)`: all forwards, then all backwards (with V > 1: loop over the chunks, "looped BFS").
- `one_f_one_b(pp, M)`: rank p runs pp−1−p warm-up forwards, then alternates one forward and one backward,
  so it never holds more than pp−p micro-batches of activations.
- `interleaved(pp, M, V, n_contiguous=N)`: the schedule of Llama 3. Micro-batches are taken in groups of N
  contiguous ones: each chunk runs the whole group before the next chunk starts. N is tunable, as in the paper:
  N = pp is Megatron's depth-first schedule, N = M is breadth-first, and the paper's Figure 6 uses N = 5. Rank p
  warms up with (V−1)·N + 2·(pp−1−p) forwards, then alternates one forward and one backward.

`simulate` checks a schedule before anything runs: every step appears once on the rank that owns its stage,
and executing the per-rank lists in order, with inputs arriving as messages, finishes — a schedule that would
deadlock or that runs a step before its input exists raises `ScheduleError` naming the stuck ranks. It returns the
timeline (start and end of each step), the measured bubble `idle / busy`, which for uniform stages equals the
formula `(pp−1)/(V·M)` (`bubble_formula`), and the peak number of micro-batches whose activations a rank holds.

Shapes of time: a rank's whole model share takes `t_forward` (forward) and `t_backward` (backward) per
micro-batch, so one chunk takes `t_forward / V`; sends take `t_comm`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "Step",
    "Schedule",
    "ScheduleError",
    "Timeline",
    "gpipe",
    "one_f_one_b",
    "interleaved",
    "make_schedule",
    "simulate",
    "bubble_formula",
    "format_schedule",
    "format_timeline",
    "plot_schedule",
    "messages",
    "timeline_from_trace",
]


class Step(NamedTuple):
    """One unit of work on one rank: forward ('F') or backward ('B') of `stage` for micro-batch `microbatch`."""

    stage: int
    microbatch: int
    kind: str  # 'F' or 'B'

    def __str__(self) -> str:
        return f"{self.kind}{self.stage}.{self.microbatch}"


class ScheduleError(ValueError):
    """A schedule that cannot run: a missing or duplicated step, a step on the wrong rank, or a deadlock."""


@dataclass
class Schedule:
    """Per-rank step lists plus the shape of the pipeline they were made for."""

    name: str
    pp: int  # ranks in the pipeline
    virtual_stages: int  # V, chunks per rank
    n_microbatches: int  # M
    steps: list[list[Step]]  # steps[rank] = the ordered steps of that rank

    @property
    def n_stages(self) -> int:
        return self.pp * self.virtual_stages

    def rank_of(self, stage: int) -> int:
        """The rank that holds `stage` (stage s is chunk s // pp of rank s % pp)."""
        return stage % self.pp

    def __getitem__(self, rank: int) -> list[Step]:
        return self.steps[rank]


def _check_sizes(pp: int, n_microbatches: int, virtual_stages: int = 1) -> None:
    for name, value in (("pp", pp), ("n_microbatches", n_microbatches), ("virtual_stages", virtual_stages)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


# ----------------------------------------------------------------------------------------------- generators
def gpipe(pp: int, n_microbatches: int, virtual_stages: int = 1) -> Schedule:
    """GPipe: every forward first, then every backward (micro-batches backwards in reverse order).

    With V > 1 each rank loops over its chunks (all micro-batches of chunk 0, then of chunk 1, …): "looped BFS".
    Activations of all M·V chunk-forwards are alive at the turn, which is GPipe's memory problem.
    """
    _check_sizes(pp, n_microbatches, virtual_stages)
    steps = []
    for rank in range(pp):
        stages = [v * pp + rank for v in range(virtual_stages)]
        fwd = [Step(s, m, "F") for s in stages for m in range(n_microbatches)]
        bwd = [Step(s, m, "B") for s in reversed(stages) for m in reversed(range(n_microbatches))]
        steps.append(fwd + bwd)
    return Schedule("GPipe", pp, virtual_stages, n_microbatches, steps)


def one_f_one_b(pp: int, n_microbatches: int) -> Schedule:
    """1F1B (PipeDream-flush): rank p runs min(pp−1−p, M) warm-up forwards, then forward/backward pairs,
    then the remaining backwards. Same bubble as GPipe, but at most pp−p micro-batches in flight on rank p."""
    _check_sizes(pp, n_microbatches)
    steps = []
    for rank in range(pp):
        warmup = min(pp - 1 - rank, n_microbatches)
        fwd = [Step(rank, m, "F") for m in range(n_microbatches)]
        bwd = [Step(rank, m, "B") for m in range(n_microbatches)]
        steps.append(_one_f_one_b_merge(fwd, bwd, warmup))
    return Schedule("1F1B", pp, 1, n_microbatches, steps)


def _one_f_one_b_merge(fwd: list[Step], bwd: list[Step], warmup: int) -> list[Step]:
    """`warmup` forwards, then alternate one forward and one backward, then the remaining backwards."""
    order = fwd[:warmup]
    f, b = warmup, 0
    while f < len(fwd):
        order += [fwd[f], bwd[b]]
        f, b = f + 1, b + 1
    return order + bwd[b:]


def interleaved(
    pp: int, n_microbatches: int, virtual_stages: int, n_contiguous: int | None = None, strict: bool = True
) -> Schedule:
    """Interleaved 1F1B with V chunks per rank and groups of N contiguous micro-batches (paper §3.3.2).

    Forward order on a rank: for each group of N micro-batches, chunk 0 on the group, chunk 1 on the group, ….
    Backward order: the same groups, chunks in reverse. Rank p first runs (V−1)·N + 2·(pp−1−p) forwards
    (capped at V·M), then alternates one forward and one backward. N defaults to min(pp, M) (Megatron's
    depth-first schedule).

    N must divide M and be at least pp, or equal M (fewer micro-batches than ranks): with a shorter last group
    or with pp > N < M this warm-up rule deadlocks (`simulate` shows where). `strict=False` builds such a
    schedule anyway, to look at the deadlock.
    """
    _check_sizes(pp, n_microbatches, virtual_stages)
    n = min(pp, n_microbatches) if n_contiguous is None else n_contiguous
    if not isinstance(n, int) or not 1 <= n <= n_microbatches:
        raise ValueError(f"n_contiguous must be an integer in [1, n_microbatches={n_microbatches}], got {n!r}")
    if strict and (n_microbatches % n or (n < pp and n != n_microbatches)):
        raise ValueError(
            f"n_contiguous={n} with pp={pp}, M={n_microbatches}: N must divide M and be >= pp "
            f"(or equal M); e.g. N={min(pp, n_microbatches)} if M is a multiple of it"
        )
    groups = [range(g, min(g + n, n_microbatches)) for g in range(0, n_microbatches, n)]
    steps = []
    for rank in range(pp):
        chunks = [v * pp + rank for v in range(virtual_stages)]
        fwd = [Step(s, m, "F") for group in groups for s in chunks for m in group]
        bwd = [Step(s, m, "B") for group in groups for s in reversed(chunks) for m in group]
        warmup = min((virtual_stages - 1) * n + 2 * (pp - 1 - rank), len(fwd))
        steps.append(_one_f_one_b_merge(fwd, bwd, warmup))
    name = f"interleaved (V={virtual_stages}, N={n})"
    return Schedule(name, pp, virtual_stages, n_microbatches, steps)


def make_schedule(
    name: str, pp: int, n_microbatches: int, virtual_stages: int = 1, n_contiguous: int | None = None
) -> Schedule:
    """`name` in {'gpipe', '1f1b', 'interleaved'}."""
    key = name.lower().replace("-", "").replace("_", "")
    if key == "gpipe":
        return gpipe(pp, n_microbatches, virtual_stages)
    if key == "1f1b":
        if virtual_stages != 1:
            raise ValueError("1F1B has one stage per rank: use 'interleaved' for virtual_stages > 1")
        return one_f_one_b(pp, n_microbatches)
    if key == "interleaved":
        return interleaved(pp, n_microbatches, virtual_stages, n_contiguous)
    raise ValueError(f"unknown schedule {name!r}: use 'gpipe', '1f1b' or 'interleaved'")


def bubble_formula(pp: int, n_microbatches: int, virtual_stages: int = 1) -> float:
    """The pipeline bubble, idle over busy time: (pp − 1) / (V · M) (paper §3.3.2; Narayanan et al. 2021)."""
    return (pp - 1) / (virtual_stages * n_microbatches)


# ----------------------------------------------------------------------------------------------- simulation
def _inputs(step: Step, n_stages: int) -> list[Step]:
    """The steps whose results `step` consumes."""
    s, m, kind = step
    if kind == "F":
        return [Step(s - 1, m, "F")] if s > 0 else []
    # a backward needs its own forward (saved activations) and the gradient from the next stage
    return [Step(s, m, "F")] + ([Step(s + 1, m, "B")] if s < n_stages - 1 else [])


def messages(schedule: Schedule) -> dict[tuple[int, int], tuple[list[Step], list[Step]]]:
    """For every ordered pair (src, dst) of ranks: the steps whose outputs src sends to dst, in src's order,
    and the steps whose outputs dst receives from src, in dst's order. The two lists hold the same steps;
    a schedule whose lists are also in the same order can run even with blocking, untagged send/recv."""
    pairs: dict[tuple[int, int], tuple[list[Step], list[Step]]] = defaultdict(lambda: ([], []))
    n_stages = schedule.n_stages
    for rank, steps in enumerate(schedule.steps):
        for step in steps:
            for dep in _inputs(step, n_stages):
                src = schedule.rank_of(dep.stage)
                if src != rank:
                    pairs[(src, rank)][1].append(dep)
    for rank, steps in enumerate(schedule.steps):  # senders in their own order
        for step in steps:
            for pair, (sent, received) in pairs.items():
                if pair[0] == rank and step in received:
                    sent.append(step)
    return dict(pairs)


@dataclass
class Timeline:
    """What `simulate` measured."""

    schedule: Schedule
    events: list[tuple[int, Step, float, float]]  # (rank, step, start, end), in execution order per rank
    makespan: float
    busy: list[float]  # per rank
    peak_in_flight: list[int]  # per rank: most chunk-forwards whose backward had not run yet
    fifo: bool  # per rank pair, messages received in the order they were sent
    t_forward: float = 1.0
    t_backward: float = 2.0
    meta: dict = field(default_factory=dict)

    @property
    def bubble(self) -> float:
        """Idle time over busy time, summed over ranks: (pp · makespan − Σ busy) / Σ busy."""
        total_busy = sum(self.busy)
        return (len(self.busy) * self.makespan - total_busy) / total_busy

    @property
    def formula(self) -> float:
        s = self.schedule
        return bubble_formula(s.pp, s.n_microbatches, s.virtual_stages)


def validate(schedule: Schedule) -> None:
    """Every (stage, micro-batch, kind) exactly once, each on the rank that holds the stage."""
    if len(schedule.steps) != schedule.pp:
        raise ScheduleError(f"{schedule.name}: {len(schedule.steps)} step lists for pp={schedule.pp} ranks")
    seen: dict[Step, int] = {}
    for rank, steps in enumerate(schedule.steps):
        for step in steps:
            step = Step(*step)
            if step.kind not in ("F", "B"):
                raise ScheduleError(f"rank {rank}: step {step} has kind {step.kind!r}; use 'F' or 'B'")
            if not (0 <= step.stage < schedule.n_stages and 0 <= step.microbatch < schedule.n_microbatches):
                raise ScheduleError(
                    f"rank {rank}: step {step} is outside {schedule.n_stages} stages × "
                    f"{schedule.n_microbatches} micro-batches"
                )
            if schedule.rank_of(step.stage) != rank:
                raise ScheduleError(
                    f"rank {rank}: step {step} belongs to rank {schedule.rank_of(step.stage)} "
                    f"(stage s lives on rank s % pp)"
                )
            if step in seen:
                raise ScheduleError(f"rank {rank}: step {step} appears twice")
            seen[step] = rank
    missing = [
        Step(s, m, k)
        for s in range(schedule.n_stages)
        for m in range(schedule.n_microbatches)
        for k in "FB"
        if Step(s, m, k) not in seen
    ]
    if missing:
        raise ScheduleError(
            f"{schedule.name}: {len(missing)} steps never run, e.g. " + ", ".join(map(str, missing[:4]))
        )


def simulate(schedule: Schedule, t_forward: float = 1.0, t_backward: float = 2.0, t_comm: float = 0.0) -> Timeline:
    """Run the per-rank lists in order, each step starting once its rank is free and its inputs have arrived.

    Raises `ScheduleError` if a step is missing/duplicated/misplaced, or if the ranks get stuck (every rank
    waits for a message that no rank will send before it is itself unblocked): that schedule would hang.
    """
    validate(schedule)
    pp, v = schedule.pp, schedule.virtual_stages
    duration = {"F": t_forward / v, "B": t_backward / v}
    done: dict[Step, float] = {}
    pos = [0] * pp
    clock = [0.0] * pp
    events: list[tuple[int, Step, float, float]] = []
    in_flight, peak = [0] * pp, [0] * pp
    total = sum(len(s) for s in schedule.steps)
    while len(events) < total:
        progressed = False
        for rank in range(pp):
            while pos[rank] < len(schedule.steps[rank]):
                step = Step(*schedule.steps[rank][pos[rank]])
                deps = _inputs(step, schedule.n_stages)
                if any(d not in done for d in deps):
                    # a backward whose own forward has not run yet can never run: the schedule is out of order
                    own = [d for d in deps if schedule.rank_of(d.stage) == rank and d not in done]
                    if own:
                        raise ScheduleError(f"rank {rank}: {step} runs before {own[0]} on the same rank")
                    break
                ready = max(
                    [done[d] + (t_comm if schedule.rank_of(d.stage) != rank else 0.0) for d in deps], default=0.0
                )
                start = max(clock[rank], ready)
                end = start + duration[step.kind]
                done[step], clock[rank] = end, end
                events.append((rank, step, start, end))
                in_flight[rank] += 1 if step.kind == "F" else -1
                peak[rank] = max(peak[rank], in_flight[rank])
                pos[rank] += 1
                progressed = True
        if not progressed:
            waits = []
            for rank in range(pp):
                if pos[rank] < len(schedule.steps[rank]):
                    step = Step(*schedule.steps[rank][pos[rank]])
                    need = [d for d in _inputs(step, schedule.n_stages) if d not in done]
                    waits.append(
                        f"rank {rank} at {step} waits for {need[0]} from rank {schedule.rank_of(need[0].stage)}"
                    )
            raise ScheduleError(f"{schedule.name} deadlocks: " + "; ".join(waits))
    fifo = all(sent == received for sent, received in messages(schedule).values())
    busy = [sum(e - s for r, _, s, e in events if r == rank) for rank in range(pp)]
    return Timeline(schedule, events, max(clock), busy, peak, fifo, t_forward, t_backward)


def timeline_from_trace(schedule: Schedule, traces: list[list[tuple[Step, float, float]]]) -> Timeline:
    """A Timeline from measured (step, start, end) per rank (e.g. `pp.run_schedule(..., trace=...)`), with time
    in units of the mean forward of a rank's model share, so it plots on the same axis as `simulate`'s."""
    t0 = min(start for trace in traces for _, start, _ in trace)
    fwd = [end - start for trace in traces for step, start, end in trace if Step(*step).kind == "F"]
    unit = sum(fwd) / len(fwd) * schedule.virtual_stages  # one rank's forward of one micro-batch
    events, in_flight, peak = [], [0] * schedule.pp, [0] * schedule.pp
    for rank, trace in enumerate(traces):
        for step, start, end in trace:
            step = Step(*step)
            events.append((rank, step, (start - t0) / unit, (end - t0) / unit))
            in_flight[rank] += 1 if step.kind == "F" else -1
            peak[rank] = max(peak[rank], in_flight[rank])
    busy = [sum(e - s for r, _, s, e in events if r == rank) for rank in range(schedule.pp)]
    makespan = max(e for *_, e in events)
    bwd = [e - s for _, st, s, e in events if st.kind == "B"]
    t_backward = sum(bwd) / len(bwd) * schedule.virtual_stages
    return Timeline(
        schedule,
        events,
        makespan,
        busy,
        peak,
        fifo=True,
        t_forward=1.0,
        t_backward=t_backward,
        meta={"measured": True, "seconds_per_unit": unit},
    )


# ----------------------------------------------------------------------------------------------- display
def format_schedule(schedule: Schedule) -> str:
    """One line per rank with its steps in order, e.g. `rank 0 | F0.0 F0.1 B0.0 …` (kind, stage.micro-batch)."""
    width = max(len(str(s)) for steps in schedule.steps for s in steps)
    lines = [
        f"{schedule.name}: pp={schedule.pp}, V={schedule.virtual_stages}, M={schedule.n_microbatches} "
        f"(step = kind stage.micro-batch; stage s runs on rank s % pp)"
    ]
    for rank, steps in enumerate(schedule.steps):
        lines.append(f"rank {rank} | " + " ".join(str(s).ljust(width) for s in steps))
    return "\n".join(lines)


def format_timeline(timeline: Timeline, unit: float | None = None) -> str:
    """A time-aligned text chart: one character column per `unit` of time (default: one chunk-forward),
    forwards as the micro-batch number, backwards as a letter (a = micro-batch 0), idle as '.'."""
    s = timeline.schedule
    unit = unit or timeline.t_forward / s.virtual_stages
    cols = round(timeline.makespan / unit)
    rows = [["."] * cols for _ in range(s.pp)]
    for rank, step, start, end in timeline.events:
        mark = str(step.microbatch % 10) if step.kind == "F" else "abcdefghijklmnopqrstuvwxyz"[step.microbatch % 26]
        for c in range(round(start / unit), round(end / unit)):
            rows[rank][c] = mark
    head = f"{s.name}: bubble measured {timeline.bubble:.4f}, formula (pp-1)/(V·M) = {timeline.formula:.4f}"
    return "\n".join([head] + [f"rank {r} |" + "".join(row) + "|" for r, row in enumerate(rows)])


def plot_schedule(timeline: Timeline | Schedule, ax=None, title: str | None = None):
    """Gantt chart of a simulated schedule: one row per rank, a box per step coloured by micro-batch (forward
    light, backward dark, chunk number written inside); the title gives the measured bubble and the formula.
    Accepts a Schedule (simulated with t_backward = 2 t_forward). Returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if isinstance(timeline, Schedule):
        timeline = simulate(timeline)
    s = timeline.schedule
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(16, 2 + timeline.makespan * 0.45 * s.virtual_stages), 0.5 + 0.5 * s.pp))
    else:
        fig = ax.figure
    cmap = plt.get_cmap("tab10")
    for rank, step, start, end in timeline.events:
        color = cmap(step.microbatch % 10)
        alpha = 0.45 if step.kind == "F" else 0.95
        ax.barh(rank, end - start, left=start, height=0.8, color=color, alpha=alpha, edgecolor="black", lw=0.5)
        label = f"{step.microbatch}" if s.virtual_stages == 1 else f"{step.microbatch}\n{step.stage // s.pp}"
        ax.text((start + end) / 2, rank, label, ha="center", va="center", fontsize=6)
    ax.set_yticks(range(s.pp), [f"rank {r}" for r in range(s.pp)])
    ax.invert_yaxis()
    ax.set_xlim(0, timeline.makespan)
    ax.set_xlabel("time (a rank's forward of one micro-batch = 1)")
    ax.set_title(
        title
        or f"{s.name}, pp={s.pp}, M={s.n_microbatches}: bubble {timeline.bubble:.3f} "
        f"(formula (pp−1)/(V·M) = {timeline.formula:.3f})",
        fontsize=9,
    )
    return fig
