"""Pipeline schedules (minillama.parallel.schedules): against torch.distributed.pipelining's own step orders, the
bubble formula (pp−1)/(V·M) of Llama 3 §3.3.2, and a simulator that must reject broken schedules."""

from types import SimpleNamespace

import matplotlib
import pytest

from minillama.parallel.schedules import (
    Schedule,
    ScheduleError,
    Step,
    bubble_formula,
    format_schedule,
    format_timeline,
    gpipe,
    interleaved,
    make_schedule,
    messages,
    one_f_one_b,
    plot_schedule,
    simulate,
)

matplotlib.use("Agg")


def torch_order(pipeline_order_ops) -> list[Step]:
    """torch's schedule IR (a list of _Action or None) as our steps, dropping idle slots and REDUCE_GRAD."""
    out = []
    for a in pipeline_order_ops:
        if a is not None and a.computation_type.value in ("F", "B"):
            out.append(Step(a.stage_index, a.microbatch_index, a.computation_type.value))
    return out


@pytest.mark.parametrize("pp,m,v", [(2, 4, 2), (4, 8, 2), (3, 6, 3), (4, 4, 4), (4, 12, 2), (4, 10, 2), (4, 3, 2)])
def test_interleaved_equals_torch_interleaved_1f1b(pp, m, v):
    """Our interleaved schedule with N = torch's micro-batches per round runs the same steps in the same order
    as torch.distributed.pipelining.ScheduleInterleaved1F1B (independent implementation of Megatron's schedule)."""
    ts = pytest.importorskip("torch.distributed.pipelining.schedules")
    rounds = max(1, m // pp)
    n = m // rounds
    ours = interleaved(pp, m, v, n_contiguous=n)
    for rank in range(pp):
        ns = SimpleNamespace(n_local_stages=v, microbatches_per_round=n, pp_group_size=pp, _n_microbatches=m)
        theirs = torch_order(ts.ScheduleInterleaved1F1B._calculate_single_rank_operations(ns, rank))
        assert ours[rank] == theirs, f"rank {rank}"


@pytest.mark.parametrize("pp,m,v", [(2, 3, 2), (4, 4, 2), (3, 5, 3)])
def test_looped_gpipe_equals_torch_looped_bfs(pp, m, v):
    """GPipe with V chunks per rank is torch's ScheduleLoopedBFS, step for step."""
    ts = pytest.importorskip("torch.distributed.pipelining.schedules")
    ours = gpipe(pp, m, v)
    for rank in range(pp):
        ns = SimpleNamespace(pp_group_size=pp, _n_microbatches=m, _stages=list(range(v)))
        assert ours[rank] == torch_order(ts.ScheduleLoopedBFS._calculate_single_rank_operations(ns, rank))


@pytest.mark.parametrize("pp,m", [(1, 1), (2, 1), (2, 5), (4, 4), (4, 9), (5, 3)])
def test_one_f_one_b_shape(pp, m):
    """1F1B on rank p: min(pp-1-p, M) forwards, then strictly alternating F/B, then backwards; micro-batches in
    order; at most pp-p micro-batches in flight (the memory 1F1B saves over GPipe, which holds M)."""
    sched = one_f_one_b(pp, m)
    for p in range(pp):
        steps = sched[p]
        warm = min(pp - 1 - p, m)
        kinds = "".join(s.kind for s in steps)
        assert kinds == "F" * warm + "FB" * (m - warm) + "B" * warm
        assert [s.microbatch for s in steps if s.kind == "F"] == list(range(m))
        assert [s.microbatch for s in steps if s.kind == "B"] == list(range(m))
    t = simulate(sched)
    assert t.peak_in_flight == [min(pp - p, m) for p in range(pp)]
    assert simulate(gpipe(pp, m)).peak_in_flight == [m] * pp


CASES = (
    [("gpipe", pp, m, 1, None) for pp, m in [(2, 2), (4, 8), (3, 7), (8, 32)]]
    + [("1f1b", pp, m, 1, None) for pp, m in [(2, 4), (4, 8), (4, 5), (16, 32)]]
    + [
        ("interleaved", pp, m, v, n)
        for pp, m, v, n in [
            (2, 4, 2, 2),
            (4, 8, 2, 4),
            (4, 8, 3, 4),
            (4, 12, 4, 4),
            (4, 10, 2, 5),
            (4, 16, 2, 8),
            (16, 32, 8, 16),
        ]
    ]
)


@pytest.mark.parametrize("name,pp,m,v,n", CASES)
@pytest.mark.parametrize("t_backward", [1.0, 2.0])
def test_measured_bubble_equals_formula(name, pp, m, v, n, t_backward):
    """Simulated idle/busy time equals (pp-1)/(V·M) for every schedule with M >= pp (the paper's formula),
    whatever the backward/forward cost ratio; the makespan is (M·V + pp − 1) chunk-steps for uniform stages."""
    t = simulate(make_schedule(name, pp, m, v, n), t_forward=1.0, t_backward=t_backward)
    assert t.bubble == pytest.approx((pp - 1) / (v * m), abs=1e-12)
    assert t.bubble == pytest.approx(bubble_formula(pp, m, v), abs=1e-12)
    # formula written out: total time = (M + (pp-1)/V) · (tf + tb)
    assert t.makespan == pytest.approx((m + (pp - 1) / v) * (1.0 + t_backward))


def test_more_chunks_less_bubble():
    """Interleaving (V chunks per rank) divides the bubble by V at the same M."""
    b1 = simulate(one_f_one_b(4, 8)).bubble
    b2 = simulate(interleaved(4, 8, 2)).bubble
    b4 = simulate(interleaved(4, 8, 4)).bubble
    assert b1 == pytest.approx(2 * b2) and b2 == pytest.approx(2 * b4)


@pytest.mark.parametrize("pp", [1, 2, 3, 4, 5])
def test_every_valid_configuration_runs(pp):
    """No schedule the generators accept deadlocks (sweep of M, V, N); invalid N raises ValueError."""
    for m in range(1, 13):
        simulate(gpipe(pp, m)), simulate(one_f_one_b(pp, m)), simulate(gpipe(pp, m, 2))
        for v in (2, 3):
            for n in range(1, m + 1):
                try:
                    sched = interleaved(pp, m, v, n)
                except ValueError:
                    assert m % n or (n < pp and n != m)
                    continue
                simulate(sched)


def test_simulator_rejects_deadlock():
    """Two ranks that each wait for the other's backward first: the simulator names the stuck ranks."""
    sched = one_f_one_b(2, 2)
    # rank 1 insists on the backward of micro-batch 1 before it has run the forward of micro-batch 1
    bad = Schedule("bad", 2, 1, 2, [sched[0], [Step(1, 0, "F"), Step(1, 1, "B"), Step(1, 1, "F"), Step(1, 0, "B")]])
    with pytest.raises(ScheduleError, match="same rank"):
        simulate(bad)
    # a genuine cross-rank cycle: the interleaved rule with N < pp < M (strict=False lets us build it)
    with pytest.raises(ScheduleError, match="deadlocks"):
        simulate(interleaved(3, 3, 2, n_contiguous=1, strict=False))
    # rank 0 wants the gradient of micro-batch 1 before sending the forward rank 1 needs
    cyc = Schedule("cycle", 2, 1, 2, [[Step(0, 0, "F"), Step(0, 1, "B"), Step(0, 1, "F"), Step(0, 0, "B")], sched[1]])
    with pytest.raises(ScheduleError):
        simulate(cyc)


def test_simulator_rejects_bad_steps():
    """Missing, duplicated or misplaced steps are refused before any simulation."""
    good = one_f_one_b(2, 2)
    with pytest.raises(ScheduleError, match="never run"):
        simulate(Schedule("missing", 2, 1, 2, [good[0][:-1], good[1]]))
    with pytest.raises(ScheduleError, match="twice"):
        simulate(Schedule("dup", 2, 1, 2, [good[0] + [good[0][0]], good[1]]))
    with pytest.raises(ScheduleError, match="belongs to rank 1"):
        simulate(Schedule("wrong rank", 2, 1, 2, [good[1], good[0]]))
    with pytest.raises(ScheduleError, match="before"):  # backward before its own forward
        simulate(Schedule("order", 2, 1, 2, [good[0], list(reversed(good[1]))]))


def test_bad_arguments():
    """Clear errors for impossible sizes."""
    with pytest.raises(ValueError, match="pp"):
        gpipe(0, 4)
    with pytest.raises(ValueError, match="n_contiguous"):
        interleaved(4, 6, 2, n_contiguous=4)  # 4 does not divide 6
    with pytest.raises(ValueError, match="interleaved"):
        make_schedule("1f1b", 2, 4, virtual_stages=2)
    with pytest.raises(ValueError, match="unknown"):
        make_schedule("zero-bubble", 2, 4)


def test_messages_match_and_fifo():
    """Every received activation/gradient is sent exactly once by the rank that produced it; for 1F1B every
    pair of ranks sees messages in send order, while interleaved on 2 ranks does not (so sends need tags)."""
    for sched in (one_f_one_b(4, 6), interleaved(4, 8, 2), gpipe(3, 4, 2), interleaved(2, 4, 2, 4)):
        for (src, _dst), (sent, received) in messages(sched).items():
            assert sorted(sent) == sorted(received) and len(set(sent)) == len(sent)
            assert all(sched.rank_of(s.stage) == src for s in sent)
    assert simulate(one_f_one_b(4, 6)).fifo
    assert not simulate(interleaved(2, 4, 2, n_contiguous=4)).fifo


def test_printers_and_plot():
    """The text printers show every step; the Gantt plot draws one box per step and states the bubble."""
    sched = interleaved(4, 8, 2)
    text = format_schedule(sched)
    assert text.count("\n") == 4 and "F4.7" in text and "B0.0" in text
    t = simulate(sched)
    chart = format_timeline(t)
    assert chart.splitlines()[1].startswith("rank 0 |0123")
    fig = plot_schedule(t)
    assert len(fig.axes[0].patches) == 2 * 8 * 8  # (F + B) × stages × micro-batches
    assert "0.188" in fig.axes[0].get_title()
    matplotlib.pyplot.close(fig)


def test_larger_n_hides_point_to_point_time():
    """Llama 3's reason for a tunable N: with send/recv taking time (t_comm > 0), more contiguous micro-batches
    per chunk (N = 2·pp instead of pp) shrink the bubble, at the price of more activations in flight; without
    communication time both meet the formula."""
    small, large = interleaved(4, 16, 2, n_contiguous=4), interleaved(4, 16, 2, n_contiguous=8)
    assert simulate(small).bubble == pytest.approx(simulate(large).bubble) == pytest.approx(bubble_formula(4, 16, 2))
    assert simulate(large, t_comm=0.25).bubble < simulate(small, t_comm=0.25).bubble - 0.02
    assert simulate(large).peak_in_flight[0] > simulate(small).peak_in_flight[0]


def test_timeline_from_trace_recovers_simulation():
    """Traces in seconds (here: a simulated run scaled to 10 ms per forward, shifted in time) give back the
    same bubble and peak memory, on the simulator's time axis."""
    from minillama.parallel.schedules import timeline_from_trace

    sched = interleaved(4, 8, 2)
    sim = simulate(sched)
    traces = [
        [(step, 100 + 0.01 * s, 100 + 0.01 * e) for r, step, s, e in sim.events if r == rank] for rank in range(4)
    ]
    t = timeline_from_trace(sched, traces)
    assert t.bubble == pytest.approx(sim.bubble) and t.makespan == pytest.approx(sim.makespan)
    assert t.peak_in_flight == sim.peak_in_flight and t.t_backward == pytest.approx(2.0)
