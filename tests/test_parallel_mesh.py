"""The [TP, CP, PP, DP] mesh (minillama.parallel.mesh): the paper's order with TP innermost, and real groups."""

import itertools

import pytest
import torch
import torch.distributed as dist

from minillama.parallel.launch import launch
from minillama.parallel.mesh import Mesh, coordinates, describe_layout, grid, layout


@pytest.mark.parametrize("sizes", [(2, 2, 2, 2), (2, 1, 3, 2), (1, 4, 1, 2), (3, 2, 1, 1)])
def test_rank_formula_and_coordinates(sizes):
    """grid[d,p,c,t] = t + TP·(c + CP·(p + PP·d)) (FACTS §9 order, TP innermost), and coordinates() inverts it."""
    tp, cp, pp, dp = sizes
    g = grid(*sizes)
    for d, p, c, t in itertools.product(range(dp), range(pp), range(cp), range(tp)):
        rank = t + tp * (c + cp * (p + pp * d))
        assert int(g[d, p, c, t]) == rank
        assert coordinates(rank, *sizes) == {"tp": t, "cp": c, "pp": p, "dp": d}


@pytest.mark.parametrize("sizes", [(2, 2, 2, 2), (2, 1, 3, 2)])
def test_groups_vary_exactly_one_coordinate(sizes):
    """Every dimension's groups partition the ranks, and inside a group only that coordinate changes, in order."""
    world = 1
    for s in sizes:
        world *= s
    for name, groups in layout(*sizes).items():
        assert sorted(r for g in groups for r in g) == list(range(world))
        varying = name.split("_")
        for g in groups:
            coords = [coordinates(r, *sizes) for r in g]
            for dim in ("tp", "cp", "pp", "dp"):
                values = [c[dim] for c in coords]
                if dim not in varying:
                    assert len(set(values)) == 1
            if len(varying) == 1:
                assert [c[name] for c in coords] == list(range(len(g)))


def test_describe_layout_2222():
    """16 ranks on [2,2,2,2]: TP pairs neighbours, CP strides 2, PP strides 4, DP strides 8."""
    text = describe_layout(2, 2, 2, 2)
    for expected in ("[0,1]", "[0,2]", "[0,4]", "[0,8]", "[5,7,13,15]"):
        assert expected in text


def test_bad_sizes():
    """A zero or non-integer size is a ValueError."""
    with pytest.raises(ValueError):
        grid(tp=0)
    with pytest.raises(ValueError):
        grid(cp=1.5)


def _mesh_job(sizes):
    mesh = Mesh(*sizes)
    out = {}
    for name in ("tp", "cp", "pp", "dp", "cp_dp"):
        t = torch.tensor([float(dist.get_rank())])
        dist.all_reduce(t, group=mesh.group(name))
        out[name] = (mesh.ranks(name), t.item())
    try:
        Mesh(tp=sizes[0] * 2, cp=sizes[1], pp=sizes[2], dp=sizes[3])
        out["wrong_size"] = None
    except ValueError as e:
        out["wrong_size"] = str(e)
    return mesh.coords, out, mesh.pp_prev, mesh.pp_next, mesh.describe()


def test_process_groups_on_16_ranks():
    """On 16 processes each group's all-reduce sums exactly the ranks layout() lists; a wrong size is refused."""
    sizes = (2, 2, 2, 2)
    results = launch(_mesh_job, 16, sizes)
    table = layout(*sizes)
    for rank, (coords, out, prev, nxt, text) in enumerate(results):
        assert coords == coordinates(rank, *sizes)
        for name, (ranks, total) in ((k, v) for k, v in out.items() if k != "wrong_size"):
            assert ranks in table[name] and rank in ranks and total == float(sum(ranks))
        assert "needs 32 processes" in out["wrong_size"]
        pp_ranks = out["pp"][0]
        assert prev == (pp_ranks[coords["pp"] - 1] if coords["pp"] > 0 else None)
        assert nxt == (pp_ranks[coords["pp"] + 1] if coords["pp"] < 1 else None)
        assert text.startswith(f"rank {rank}:")


def _device_mesh_job():
    mesh = Mesh(tp=2, pp=2)
    dm = mesh.device_mesh()
    return [(dm[name].mesh.tolist(), mesh.ranks(name)) for name in ("tp", "cp", "pp", "dp")]


def test_torch_device_mesh_view_agrees():
    """`Mesh.device_mesh()` (torch's DeviceMesh, dims dp, pp, cp, tp) gives every rank the same groups."""
    for per_dim in launch(_device_mesh_job, 4):
        for torch_ranks, ours in per_dim:
            assert torch_ranks == ours
