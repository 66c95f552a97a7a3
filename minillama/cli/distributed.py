"""`minillama pretrain` on a device of choice and over several processes: the device, the process group under
`torchrun`, and the model wrapped with DDP or FSDP2 (paper §3.3.2: data parallelism, the outermost of Llama 3's
four dimensions). A helper of `minillama.cli.pretrain`, not a command.

    torchrun --nproc_per_node=8 -m minillama.pretrain --dist fsdp --preset base --out runs/base

Each process runs the same `minillama.train.Trainer` on its slice of the same global batch (`Trainer(module=...,
rank=..., world_size=...)`); the checkpoint holds the whole model, so a run resumes on any number of processes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from minillama.parallel.launch import under_torchrun
from minillama.parallel.native import native_fsdp

__all__ = ["DEVICES", "pick_device", "Cluster", "rows_error"]

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str) -> tuple[torch.device | None, str | None]:
    """(device, None) for `--device name`, or (None, a one-line reason) when this machine has no such device.
    auto: CUDA if available, else MPS, else the CPU."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda" and not cuda:
        why = "a CPU-only build of torch" if torch.version.cuda is None else "no GPU visible"
        return None, f"--device cuda: CUDA is not available here (torch {torch.__version__}, {why}); use --device cpu"
    if name == "mps" and not mps:
        return None, "--device mps: Apple's MPS backend is not available on this machine; use --device cpu"
    return torch.device(name), None


def rows_error(rows: list[int], micro: int | None, world_size: int) -> str | None:
    """Why `world_size` processes cannot split these batches (each takes an equal share of every batch's rows),
    or None. rows: the batch rows of every stage of the ramp; micro: rows per forward (None: the whole batch)."""
    if world_size == 1:
        return None
    if micro and micro % world_size:
        return (
            f"world size {world_size} does not divide the micro-batch of {micro} rows: every process takes an equal "
            f"share of each micro-batch; use a --micro-batch-size that is a multiple of {world_size}, or another "
            "--nproc_per_node"
        )
    bad = [r for r in rows if r % world_size]
    if bad and len(rows) == 1:
        return (
            f"world size {world_size} does not divide the batch rows {rows[0]}: every process takes an equal share "
            f"of each batch; use a --batch-size that is a multiple of {world_size}, or another --nproc_per_node"
        )
    if bad:
        return (
            f"world size {world_size} does not divide the batch rows {', '.join(map(str, bad))} (batch ramp: "
            f"{', '.join(map(str, rows))} rows): every process takes an equal share of each batch; use a "
            f"--batch-size that is a multiple of {4 * world_size} (the ramp starts at a quarter), or --no-ramp and "
            f"a multiple of {world_size}, or another --nproc_per_node"
        )
    return None


@dataclass
class Cluster:
    """This process's place in the run: one process (the default), or one of `world_size` under torchrun.

    kind: "ddp" (DistributedDataParallel: whole model per process, gradients all-reduced) or "fsdp" (FSDP2 via
    `minillama.parallel.native.native_fsdp`: weights, gradients and optimizer moments sharded over a 1-D mesh).
    """

    device: torch.device
    kind: str = "ddp"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False  # under torchrun (even with one process)
    owns_group: bool = False  # this process initialised the group (and so destroys it)
    _mesh: object = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: torch.device, kind: str) -> Cluster:
        """One process; or, under torchrun (RANK, WORLD_SIZE set), join the group: NCCL on CUDA (this process on
        GPU LOCAL_RANK), gloo on the CPU. A group that a launcher already initialised is used as it is."""
        if not under_torchrun():
            return cls(device, kind)
        if device.type == "mps":
            raise ValueError("--device mps runs one process (gloo and NCCL do not reach MPS); use cpu or cuda")
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        owns = not dist.is_initialized()
        if owns:
            if device.type == "cuda":  # device_id: NCCL binds this GPU now, not at the first collective
                dist.init_process_group("nccl", device_id=device)
            else:
                dist.init_process_group("gloo")
        return cls(device, kind, dist.get_rank(), dist.get_world_size(), local_rank, True, owns)

    def describe(self) -> str:
        if not self.distributed:
            return f"1 process on {self.device}"
        processes = f"{self.world_size} process{'es' if self.world_size > 1 else ''}"
        return f"{processes} ({self.kind}, {dist.get_backend()}) on {self.device.type}"

    def wrap(self, model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
        """(model, module) for `Trainer(model, ..., module=module)`: the model already on this process's device.
        DDP: the plain model and its DDP wrapper. FSDP2: the model sharded in place, no wrapper. One process: as is.
        """
        if not self.distributed:
            return model, None
        if self.kind == "fsdp":
            # torch's native parallel APIs load only on this path (slow imports)
            from torch.distributed.device_mesh import init_device_mesh

            self._mesh = init_device_mesh(self.device.type, (self.world_size,), mesh_dim_names=("dp",))
            return native_fsdp(model, self._mesh["dp"]), None
        ids = [self.device.index] if self.device.type == "cuda" else None
        return model, nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def broadcast(self, value):
        """Rank 0's `value` (picklable) in every process."""
        if not self.distributed or self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed and self.world_size > 1:
            dist.barrier()

    def close(self, ok: bool = True) -> None:
        """Leave the group this process initialised; after a normal end, wait for the others first (after a
        failure a barrier would wait for processes that may be gone)."""
        if self.owns_group and dist.is_initialized():
            if ok:
                dist.barrier()
            dist.destroy_process_group()

    @contextlib.contextmanager
    def quiet_unless_main(self):
        """Only rank 0 prints: the other processes' stdout and stderr go nowhere inside this block (a traceback
        that escapes it is still printed, after the block has restored them)."""
        if self.is_main:
            yield
            return
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
            yield
