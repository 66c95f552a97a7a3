"""Llama 3's 4D parallelism (paper §3.3.2), hand-written with plain collectives, on simulated CPU devices.

One idea per module:
- `launch`: start N gloo worker processes on a CPU (or join a `torchrun` job); `launch(fn, n, *args)`.
- `mesh`: the [TP, CP, PP, DP] device mesh, TP innermost, with its process groups; `Mesh(tp, cp, pp, dp)`.
- `dp`: data parallel, bucketed gradient all-reduce.
- `fsdp`: ZeRO-3 / FSDP sharding of parameters, gradients and optimizer state.
- `tp`: Megatron tensor parallel (column/row-parallel linears, vocab-parallel embedding and cross-entropy).
- `cp`: context parallel (2×CP chunks, K/V all-gather).
- `pp`: pipeline parallel schedules.
- `fourd`: the four composed: one training step of a small Llama on a TP×CP×PP×DP mesh.
- `minillama parallel-check --tp 2 --cp 2 --pp 2 --dp 2` (`minillama.cli.parallel_check`): any layout against one
  device.

Submodules are imported on use (`from minillama.parallel.tp import ...`) so that importing the package is cheap.
"""

from minillama.parallel.launch import WorkerError, device, launch, under_torchrun
from minillama.parallel.mesh import Mesh, describe_layout, layout

__all__ = ["launch", "device", "under_torchrun", "WorkerError", "Mesh", "layout", "describe_layout"]
