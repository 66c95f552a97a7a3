"""FSDP / ZeRO-3: shard parameters, gradients and optimizer state over the data-parallel group (paper §3.3.2).

Llama 3's DP dimension is FSDP (paper §3.3.2). Each *unit* (a transformer block, and the rest of the model: the
embedding, the final norm and the output) keeps its parameters as one flat vector cut into N equal shards; rank r
stores only shard r, its gradient and its AdamW moments: 1/N of the memory of plain DP.

    forward   all-gather the unit's shards (in the model's dtype) just before the unit first runs;
              the paper does *not* reshard after forward, so backward reuses the gathered weights
    backward  gradients accumulate in the full parameters (over micro-batches too)
    reduce    `reduce_scatter_grads()`: the flat gradient, in float32 (or float64 for a float64 model),
              is reduce-scattered, so rank r receives the sum over ranks of shard r's gradient
    step      the optimizer updates the shards (float32 master copies of a bf16 model), then `reshard()`
              frees the full parameters; the next forward gathers the new values

Communication per step: one all-gather of the weights and one reduce-scatter of the gradients, together the
same bytes as DP's one all-reduce (an all-reduce *is* a reduce-scatter followed by an all-gather).

    fsdp = FullyShardedDataParallel(model, mesh.dp_group)     # model parameters become empty until gathered
    opt = torch.optim.AdamW(fsdp.parameters(), ...)            # the shards only
    loss = ...; loss.backward(); fsdp.reduce_scatter_grads(); opt.step(); fsdp.reshard()

Shapes: N ranks in the group; a unit's flat vector has P elements, padded to N·ceil(P/N); a shard has ceil(P/N).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from einops import rearrange
from torch import Tensor, nn


class FlatShard:
    """The parameters of one unit, flattened, padded and cut into N shards; this rank keeps one."""

    def __init__(self, named_params: list[tuple[str, nn.Parameter]], owners: list[nn.Module], group):
        self.group, self.n, rank = group, dist.get_world_size(group), dist.get_rank(group)
        self.names = [name for name, _ in named_params]
        self.params = [p for _, p in named_params]
        self.shapes = [p.shape for p in self.params]
        self.dtype = self.params[0].dtype
        self.master_dtype = torch.promote_types(self.dtype, torch.float32)  # also the reduce-scatter dtype
        total = sum(p.numel() for p in self.params)
        self.shard_numel = math.ceil(total / self.n)
        flat = self._pad(torch.cat([p.detach().reshape(-1) for p in self.params]))
        shards = rearrange(flat, "(n k) -> n k", n=self.n)
        self.shard = nn.Parameter(shards[rank].to(self.master_dtype).clone())  # (ceil(P/N),)
        self.gathered = False
        for module in owners:  # any of the unit's modules about to run gathers the whole unit
            module.register_forward_pre_hook(lambda *_: self.unshard())
        self.reshard()

    def _pad(self, flat: Tensor) -> Tensor:
        return torch.cat([flat, flat.new_zeros(self.n * self.shard_numel - flat.numel())])

    def _unflatten(self, full: Tensor) -> list[Tensor]:
        sizes = [math.prod(s) for s in self.shapes]
        return [t.view(s) for t, s in zip(full[: sum(sizes)].split(sizes), self.shapes)]

    @torch.no_grad()
    def unshard(self) -> None:
        """All-gather the shards and point every parameter at its piece of the full flat vector."""
        if self.gathered:
            return
        parts = [torch.empty(self.shard_numel, dtype=self.dtype, device=self.shard.device) for _ in range(self.n)]
        dist.all_gather(parts, self.shard.detach().to(self.dtype), group=self.group)
        for p, full in zip(self.params, self._unflatten(torch.cat(parts))):
            p.data = full
        self.gathered = True

    def reshard(self) -> None:
        """Free the full parameters (they hold nothing until the next `unshard`)."""
        for p in self.params:
            p.data = torch.empty(0, dtype=self.dtype, device=self.shard.device)
        self.gathered = False

    @torch.no_grad()
    def reduce_scatter_grad(self) -> None:
        """Sum the full gradients over the group, keep this rank's shard in `self.shard.grad`, free the rest."""
        grads = [
            p.grad if p.grad is not None else torch.zeros(s, dtype=self.dtype, device=self.shard.device)
            for p, s in zip(self.params, self.shapes)
        ]
        flat = self._pad(torch.cat([g.reshape(-1).to(self.master_dtype) for g in grads]))
        out = torch.empty(self.shard_numel, dtype=self.master_dtype, device=flat.device)
        dist.reduce_scatter(out, list(rearrange(flat, "(n k) -> n k", n=self.n).unbind(0)), group=self.group)
        self.shard.grad = out if self.shard.grad is None else self.shard.grad + out
        for p in self.params:
            p.grad = None

    def gather(self, shard: Tensor) -> dict[str, Tensor]:
        """All-gather any shard-shaped tensor (e.g. the gradient) and cut it into full tensors by name."""
        parts = [torch.empty_like(shard) for _ in range(self.n)]
        dist.all_gather(parts, shard.contiguous(), group=self.group)
        return dict(zip(self.names, self._unflatten(torch.cat(parts))))


class FullyShardedDataParallel:
    """FSDP over `group` with one unit per transformer block (default) plus one for the remaining parameters."""

    def __init__(self, model: nn.Module, group, units: list[nn.Module] | None = None):
        if units is None:
            layers = model.layers.values() if isinstance(model.layers, nn.ModuleDict) else model.layers
            units = [*layers, model]
        name_of = {id(p): n for n, p in model.named_parameters()}
        seen: set[int] = set()
        self.units: list[FlatShard] = []
        for unit in units:
            named = [(name_of[id(p)], p) for p in unit.parameters() if id(p) not in seen]
            if not named:
                continue
            seen.update(id(p) for _, p in named)
            owners = [
                m
                for m in unit.modules()
                if any(id(p) in {id(q) for _, q in named} for p in m.parameters(recurse=False))
            ]
            self.units.append(FlatShard(named, owners, group))

    def parameters(self) -> list[nn.Parameter]:
        """The shards: what the optimizer updates (its moments are sharded with them)."""
        return [u.shard for u in self.units]

    def unshard(self) -> None:
        for u in self.units:
            u.unshard()

    def reshard(self) -> None:
        for u in self.units:
            u.reshard()

    def reduce_scatter_grads(self) -> None:
        """After backward (all micro-batches): gradients summed over the group, sharded, in float32 or wider."""
        for u in reversed(self.units):  # the order backward finished them
            u.reduce_scatter_grad()

    def full_grads(self) -> dict[str, Tensor]:
        """Every full gradient by parameter name (all-gathered; for checking, not for training)."""
        out: dict[str, Tensor] = {}
        for u in self.units:
            out.update(u.gather(u.shard.grad))
        return out

    def full_parameters(self) -> dict[str, Tensor]:
        """Every full parameter by name, from the current shards (all-gathered; for checking)."""
        out: dict[str, Tensor] = {}
        for u in self.units:
            out.update(u.gather(u.shard.detach()))
        return out
