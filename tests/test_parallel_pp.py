"""Pipeline parallelism (minillama.parallel.pp) on 2 and 4 simulated CPU devices: for every schedule, the loss, the
gradients and the parameters after an AdamW step equal the single-process run (float64 ≤ 1e-10, float32 ≤ 1e-5).
One launch per world size runs all the cases, to keep start-up cost low."""

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from minillama import ModelArgs, Transformer
from minillama.parallel.launch import launch
from minillama.parallel.pp import PipelineStage, build_stages, run_schedule, stage_layers
from minillama.parallel.schedules import make_schedule, simulate

B, S = 2, 8  # micro-batch size, sequence length


def tiny_args(n_layers: int) -> ModelArgs:
    return ModelArgs(
        dim=32,
        n_layers=n_layers,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=64,
        multiple_of=16,
        ffn_dim_multiplier=None,
        max_seq_len=16,
        rope_theta=10000.0,
        use_scaled_rope=False,
    )


def _one_case(name, v, m, n_layers, dtype_name, n_contiguous=None, wrong_normaliser=False):
    rank, pp = dist.get_rank(), dist.get_world_size()
    dtype = getattr(torch, dtype_name)
    args = tiny_args(n_layers)
    gen = torch.Generator().manual_seed(1234)
    tokens = torch.randint(0, args.vocab_size, (m * B, S), generator=gen)
    targets = torch.randint(0, args.vocab_size, (m * B, S), generator=gen)
    targets[0, :3] = -100  # ignored positions count in neither the loss nor the normaliser

    ref = Transformer(args).init_weights(seed=7).to(dtype)
    model = Transformer(args).init_weights(seed=7).to(dtype)
    # the single process: whole batch, mean loss over its tokens
    logits = ref(tokens)  # float64 logits for a float64 model
    loss_ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    loss_ref.backward()

    stages = build_stages(model, rank, pp, v)
    sched = make_schedule(name, pp, m, v, n_contiguous)
    simulate(sched)
    n_tokens = int((targets != -100).sum())
    if wrong_normaliser:  # the classic bug: each micro-batch's mean, summed
        n_tokens = n_tokens // m
    loss = run_schedule(stages, sched, list(tokens.chunk(m)), list(targets.chunk(m)), n_tokens=n_tokens)

    ref_params = dict(ref.named_parameters())
    mine = dict(model.named_parameters())
    grad_diff = max((p.grad - ref_params[k].grad).abs().max().item() for k, p in mine.items())
    for opt_model in (ref, model):
        opt = torch.optim.AdamW(opt_model.parameters(), lr=1e-3, weight_decay=0.1)
        opt.step()
    param_diff = max((p - ref_params[k]).abs().max().item() for k, p in mine.items())
    moved = max(
        (p - q).abs().max().item()
        for p, q in zip(ref.parameters(), Transformer(args).init_weights(seed=7).to(dtype).parameters())
    )
    # gather which parameters each rank held, to check that the ranks together hold the whole model once
    return {
        "loss_diff": abs(loss.item() - loss_ref.item()),
        "grad_diff": grad_diff,
        "param_diff": param_diff,
        "moved": moved,
        "names": sorted(mine),
        "all_names": sorted(ref_params),
        "stages": [repr(st) for st in stages],
    }


def _cases(cases):
    return [_one_case(*case) for case in cases]


def _subgroup_case():
    """Mesh(pp=2, dp=2) on 4 ranks: each DP replica pipelines its own rows over its PP sub-group (global ranks
    [0, 1] or [2, 3]); messages must stay inside the sub-group."""
    from minillama.parallel.mesh import Mesh

    mesh = Mesh(tp=1, cp=1, pp=2, dp=2)
    args = tiny_args(2)
    gen = torch.Generator().manual_seed(77)
    tokens = torch.randint(0, args.vocab_size, (2, 4 * B, S), generator=gen)[mesh.dp_rank]  # this replica's rows
    ref = Transformer(args).init_weights(seed=8).double()
    loss_ref = F.cross_entropy(ref(tokens).flatten(0, 1), tokens.flatten())
    loss_ref.backward()
    model = Transformer(args).init_weights(seed=8).double()
    stages = build_stages(model, mesh.pp_rank, mesh.pp, 2)
    loss = run_schedule(
        stages, make_schedule("interleaved", 2, 4, 2), list(tokens.chunk(4)), list(tokens.chunk(4)), group=mesh.pp_group
    )
    ref_params = dict(ref.named_parameters())
    grad_diff = max((p.grad - ref_params[k].grad).abs().max().item() for k, p in model.named_parameters())
    return {"loss_diff": abs(loss.item() - loss_ref.item()), "grad_diff": grad_diff, "pp_ranks": mesh.ranks("pp")}


def _cases_and_subgroup(cases):
    return _cases(cases) + [_subgroup_case()]


CASES_2 = [
    ("gpipe", 1, 4, 2, "float64"),
    ("1f1b", 1, 4, 2, "float64"),
    ("1f1b", 1, 1, 2, "float64"),  # fewer micro-batches than stages
    ("interleaved", 2, 4, 2, "float64"),  # 4 stages: [embedding] [layer 0] [layer 1] [output]
    ("interleaved", 2, 4, 2, "float64", 4),  # N = M = 4: messages arrive out of send order, tags sort them out
    ("gpipe", 2, 3, 2, "float64"),  # looped BFS
    ("interleaved", 2, 6, 4, "float32", 3),
    ("1f1b", 1, 4, 2, "float64", None, True),  # wrong normaliser: must NOT match
]
CASES_4 = [
    ("1f1b", 1, 8, 6, "float64"),
    ("interleaved", 2, 8, 6, "float64"),  # 8 stages on 4 ranks: the first only the embedding, the last the output
    ("interleaved", 2, 2, 6, "float64"),  # N = M = 2 < pp = 4 (the paper's "fewer micro-batches than stages")
]


@pytest.fixture(scope="module")
def results_2():
    return launch(_cases, 2, CASES_2, timeout=60)


@pytest.fixture(scope="module")
def results_4():
    return launch(_cases_and_subgroup, 4, CASES_4, timeout=60)


def _check(per_rank, i, case):
    tol = 1e-10 if case[4] == "float64" else 1e-5
    for rank_result in per_rank:
        r = rank_result[i]
        assert r["loss_diff"] <= tol, (case, r["loss_diff"])
        assert r["grad_diff"] <= tol, (case, r["grad_diff"])
        assert r["param_diff"] <= tol, (case, r["param_diff"])
        assert r["moved"] > 5e-4  # the optimizer step did something
    names = [n for rank_result in per_rank for n in rank_result[i]["names"]]
    assert sorted(names) == per_rank[0][i]["all_names"], "the ranks must hold every parameter exactly once"


@pytest.mark.parametrize("i", range(len(CASES_2) - 1))
def test_two_ranks_match_one_device(results_2, i):
    """2 ranks, each schedule: loss, every gradient and every parameter after AdamW equal one device."""
    _check(results_2, i, CASES_2[i])


def test_wrong_normaliser_is_caught(results_2):
    """Normalising each micro-batch by its own token count (then summing) gives a different loss: the comparison
    above can fail."""
    assert all(r[-1]["loss_diff"] > 1e-3 for r in results_2)


def test_pipeline_on_a_mesh_subgroup(results_4):
    """On Mesh(pp=2, dp=2) each DP replica runs the interleaved schedule over its own PP sub-group (global ranks
    [0, 1] / [2, 3]) and matches one device on its own rows: messages use group ranks, not global ones."""
    assert [r[-1]["pp_ranks"] for r in results_4] == [[0, 1], [0, 1], [2, 3], [2, 3]]
    for r in results_4:
        assert r[-1]["loss_diff"] <= 1e-10 and r[-1]["grad_diff"] <= 1e-10, r[-1]


@pytest.mark.parametrize("i", range(len(CASES_4)))
def test_four_ranks_match_one_device(results_4, i):
    """4 ranks: 1F1B and interleaved (V = 2, eight stages), including fewer micro-batches than ranks."""
    _check(results_4, i, CASES_4[i])


def test_first_and_last_stage_hold_one_layer_less(results_4):
    """Llama 3: embedding and output count as a layer; on 4 ranks × 2 chunks with 6 layers the first chunk is the
    embedding alone and the last the norm and output alone."""
    assert "stage 0/8: tok_embeddings + layers []" in results_4[0][1]["stages"][0]
    assert "stage 7/8: layers [] + norm + output" in results_4[3][1]["stages"][1]
    assert [len(r) for r in stage_layers(126, 16)] == [7] + [8] * 14 + [7]
    assert [len(r) for r in stage_layers(126, 128)] == [0] + [1] * 126 + [0]


def test_single_process_pipeline_without_launch():
    """pp = 1 with V = 2 (two stages on one rank, messages passed locally) runs without a process group."""
    args = tiny_args(2)
    ref = Transformer(args).init_weights(seed=3).double()
    model = Transformer(args).init_weights(seed=3).double()
    tokens = torch.randint(0, 64, (4, S))
    loss_ref = F.cross_entropy(ref(tokens).flatten(0, 1), tokens.flatten())
    loss_ref.backward()
    stages = build_stages(model, 0, 1, 2)
    sched, trace = make_schedule("interleaved", 1, 2, 2), []
    loss = run_schedule(stages, sched, list(tokens.chunk(2)), list(tokens.chunk(2)), trace=trace)
    assert [step for step, _, _ in trace] == sched[0] and all(a <= b for _, a, b in trace)
    assert abs(loss.item() - loss_ref.item()) < 1e-12
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref.get_parameter(k).grad, atol=1e-12, rtol=0)


def test_bad_inputs():
    """Clear errors: too many stages for the layers, a schedule for the wrong pipeline, tied embeddings."""
    with pytest.raises(ValueError, match="cannot fill"):
        stage_layers(2, 5)
    model = Transformer(tiny_args(2))
    stages = build_stages(model, 0, 1, 1)
    with pytest.raises(ValueError, match="micro-batches"):
        run_schedule(stages, make_schedule("1f1b", 1, 2), [torch.zeros(1, 4, dtype=torch.long)], [])
    with pytest.raises(ValueError, match="holds stages"):
        run_schedule(
            stages,
            make_schedule("interleaved", 1, 1, 2),
            [torch.zeros(1, 4, dtype=torch.long)],
            [torch.zeros(1, 4, dtype=torch.long)],
        )
    tied = ModelArgs(**{**tiny_args(2).__dict__, "tie_word_embeddings": True})
    with pytest.raises(ValueError, match="tied"):
        build_stages(Transformer(tied), 0, 2, 1)
    assert isinstance(stages[0], PipelineStage)
