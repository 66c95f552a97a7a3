"""The 4D device mesh in Llama 3's order [TP, CP, PP, DP], TP innermost (paper §3.3.2).

The paper orders the groups from the most bandwidth-hungry (tensor parallel, inside one 8-GPU server on NVLink)
to the least (data parallel, across the data centre). TP innermost means consecutive ranks form a TP group:

    rank = tp_rank + TP·(cp_rank + CP·(pp_rank + PP·dp_rank))
    grid = arange(world).view(DP, PP, CP, TP)          # grid[dp, pp, cp, tp] = rank

Example, Mesh(tp=2, cp=2, pp=2, dp=2) on 16 ranks: rank 5 = (tp 1, cp 0, pp 1, dp 0); its TP group is [4, 5],
its CP group [5, 7], its PP group [1, 5], its DP group [5, 13].

    mesh = Mesh(tp=2, cp=1, pp=2, dp=1)     # inside a launched function, after init_process_group
    mesh.tp_rank, mesh.pp_rank, ...         # coordinates of this rank
    mesh.tp_group, mesh.pp_group, ...       # torch.distributed process groups (plain dist.new_group)
    mesh.ranks("pp")                        # global ranks of my PP group, ordered by pp coordinate
    mesh.cp_dp_group                        # DP×CP: the ranks that see different tokens of the same weights
    mesh.rank_of(tp=0, cp=0, pp=1, dp=0)    # global rank at a coordinate
    print(mesh.describe())                  # who talks to whom, per dimension

`layout(tp, cp, pp, dp)` and `describe_layout(...)` need no process group (use them in a notebook).
Collectives take *global* ranks (`dist.send(t, dst=mesh.ranks("pp")[i])`) even when given a group.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

DIMS = ("tp", "cp", "pp", "dp")  # innermost first, the paper's order


def grid(tp: int = 1, cp: int = 1, pp: int = 1, dp: int = 1) -> torch.Tensor:
    """(dp, pp, cp, tp) int64 tensor of global ranks: `grid[d, p, c, t] = t + TP·(c + CP·(p + PP·d))`."""
    for name, size in zip(DIMS, (tp, cp, pp, dp)):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"mesh size {name}={size!r} must be a positive integer")
    return torch.arange(tp * cp * pp * dp).view(dp, pp, cp, tp)


def coordinates(rank: int, tp: int = 1, cp: int = 1, pp: int = 1, dp: int = 1) -> dict[str, int]:
    """{'tp': .., 'cp': .., 'pp': .., 'dp': ..} of a global rank (the inverse of the rank formula)."""
    world = tp * cp * pp * dp
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a mesh of {world} ranks")
    return {"tp": rank % tp, "cp": rank // tp % cp, "pp": rank // (tp * cp) % pp, "dp": rank // (tp * cp * pp)}


def layout(tp: int = 1, cp: int = 1, pp: int = 1, dp: int = 1) -> dict[str, list[list[int]]]:
    """All groups of each dimension (and of 'cp_dp'): lists of global ranks that talk along it."""
    g = grid(tp, cp, pp, dp)  # axes: dp=0, pp=1, cp=2, tp=3
    axis = {"tp": 3, "cp": 2, "pp": 1, "dp": 0}
    out = {}
    for name in DIMS:
        moved = g.movedim(axis[name], -1)
        out[name] = moved.reshape(-1, moved.shape[-1]).tolist()
    moved = g.permute(1, 3, 0, 2)  # (pp, tp, dp, cp): each (pp, tp) pair holds one DP×CP group
    out["cp_dp"] = moved.reshape(pp * tp, dp * cp).tolist()
    return out


def describe_layout(tp: int = 1, cp: int = 1, pp: int = 1, dp: int = 1) -> str:
    """A text table: for each dimension, the groups of ranks that exchange data along it, and what they send."""
    what = {
        "tp": "activations (all-reduce / all-gather inside each layer)",
        "cp": "keys and values (all-gather in each attention)",
        "pp": "activations and their gradients (send/recv between stages)",
        "dp": "gradients (reduce-scatter) and parameters (all-gather)",
        "cp_dp": "gradient reduction: ranks holding the same weights but different tokens",
    }
    lines = [
        f"Mesh [TP={tp}, CP={cp}, PP={pp}, DP={dp}]: {tp * cp * pp * dp} ranks, rank = tp + TP·(cp + CP·(pp + PP·dp))"
    ]
    for name, groups in layout(tp, cp, pp, dp).items():
        sizes = {"tp": tp, "cp": cp, "pp": pp, "dp": dp, "cp_dp": cp * dp}
        if sizes[name] == 1:
            continue
        lines.append(f"  {name:5s} ({what[name]}):")
        lines.append("        " + "  ".join("[" + ",".join(map(str, gr)) + "]" for gr in groups))
    return "\n".join(lines)


class Mesh:
    """Process groups of a [TP, CP, PP, DP] mesh; build inside every rank (group creation is collective)."""

    def __init__(self, tp: int = 1, cp: int = 1, pp: int = 1, dp: int = 1):
        self.sizes = {"tp": tp, "cp": cp, "pp": pp, "dp": dp}
        self.tp, self.cp, self.pp, self.dp = tp, cp, pp, dp
        self.world_size = math.prod(self.sizes.values())
        if not dist.is_initialized():
            raise RuntimeError("Mesh needs torch.distributed: build it inside a function run by launch(...)")
        if dist.get_world_size() != self.world_size:
            raise ValueError(
                f"Mesh(tp={tp}, cp={cp}, pp={pp}, dp={dp}) needs {self.world_size} processes, "
                f"the job has {dist.get_world_size()}: change the sizes or the number of processes"
            )
        self.rank = dist.get_rank()
        self.coords = coordinates(self.rank, tp, cp, pp, dp)
        self.tp_rank, self.cp_rank = self.coords["tp"], self.coords["cp"]
        self.pp_rank, self.dp_rank = self.coords["pp"], self.coords["dp"]
        self._ranks: dict[str, list[int]] = {}
        self._groups: dict[str, dist.ProcessGroup] = {}
        # Every rank must create every group, in the same order; it keeps the ones it belongs to.
        for name, groups in layout(tp, cp, pp, dp).items():
            for ranks in groups:
                group = dist.new_group(ranks)
                if self.rank in ranks:
                    self._ranks[name], self._groups[name] = ranks, group
        self.tp_group, self.cp_group = self._groups["tp"], self._groups["cp"]
        self.pp_group, self.dp_group = self._groups["pp"], self._groups["dp"]
        self.cp_dp_group = self._groups["cp_dp"]

    def group(self, name: str) -> dist.ProcessGroup:
        """Process group of this rank along 'tp', 'cp', 'pp', 'dp' or 'cp_dp'."""
        return self._groups[name]

    def ranks(self, name: str) -> list[int]:
        """Global ranks of this rank's group along a dimension, ordered by that coordinate."""
        return self._ranks[name]

    def rank_of(self, tp: int = 0, cp: int = 0, pp: int = 0, dp: int = 0) -> int:
        """Global rank at a coordinate."""
        return tp + self.tp * (cp + self.cp * (pp + self.pp * dp))

    @property
    def pp_prev(self) -> int | None:
        """Global rank of the previous pipeline stage (None on the first)."""
        return self.ranks("pp")[self.pp_rank - 1] if self.pp_rank > 0 else None

    @property
    def pp_next(self) -> int | None:
        """Global rank of the next pipeline stage (None on the last)."""
        return self.ranks("pp")[self.pp_rank + 1] if self.pp_rank < self.pp - 1 else None

    def device_mesh(self, device_type: str = "cpu"):
        """The same layout as a `torch.distributed.device_mesh.DeviceMesh` with dims ('dp', 'pp', 'cp', 'tp').

        torch's mesh lists the outermost dimension first; `init_device_mesh` builds its own groups.
        """
        # torch's native parallel APIs load only on this path (slow imports, some absent on older torch)
        from torch.distributed.device_mesh import init_device_mesh

        return init_device_mesh(
            device_type, (self.dp, self.pp, self.cp, self.tp), mesh_dim_names=("dp", "pp", "cp", "tp")
        )

    def describe(self) -> str:
        """This rank's coordinates and groups, then the whole layout."""
        mine = ", ".join(f"{n} {self.coords[n]}/{self.sizes[n]} {self.ranks(n)}" for n in DIMS)
        return f"rank {self.rank}: {mine}\n" + describe_layout(self.tp, self.cp, self.pp, self.dp)

    def __repr__(self) -> str:
        return f"Mesh(tp={self.tp}, cp={self.cp}, pp={self.pp}, dp={self.dp}) at rank {self.rank} {self.coords}"
