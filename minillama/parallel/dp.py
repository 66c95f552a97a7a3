"""Data parallelism (DP): every rank holds the whole model, sees different examples, and sums gradients.

The all-reduce of gradients is bucketed, as in PyTorch DDP: parameters are grouped, in the reverse order of
their use (the order in which backward produces their gradients), into buckets of about `bucket_mb` megabytes.
When the last gradient of a bucket is ready (a post-accumulate-grad hook), the bucket is flattened into one
buffer and its all-reduce starts asynchronously, while backward goes on computing earlier layers' gradients.
`finish()` waits for the outstanding buckets and copies the summed gradients back. One big all-reduce per
bucket instead of one per tensor pays the per-message latency once; starting early overlaps communication with
compute.

The loss must be normalised by the *global* number of tokens (all DP ranks together), and the gradients then
*summed* (ReduceOp.SUM). Averaging per-rank means would agree only when every rank has the same token count.

Llama 3 uses FSDP for its DP dimension (see `fsdp.py`); this module is the plain form of the idea.

    dp = DataParallel(model, mesh.dp_group)      # builds buckets, registers hooks
    loss.backward(); dp.finish()                 # gradients now summed over the group
    optimizer.step()
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class Bucket:
    """A group of parameters whose gradients are all-reduced together as one flat buffer."""

    def __init__(self, params: list[nn.Parameter]):
        self.params, self.ready, self.work, self.flat = params, 0, None, None

    def start(self, group) -> None:
        """Flatten the gradients (numel,) and start their all-reduce (non-blocking)."""
        self.flat = torch.cat([p.grad.reshape(-1) for p in self.params])
        self.work = dist.all_reduce(self.flat, group=group, async_op=True)

    def finish(self) -> None:
        """Wait for the all-reduce, copy the sums back into `p.grad`, reset for the next step."""
        self.work.wait()
        offset = 0
        for p in self.params:
            p.grad.copy_(self.flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        self.ready, self.work, self.flat = 0, None, None


class DataParallel:
    """Bucketed, overlapped gradient all-reduce for the parameters of `model` over `group`."""

    def __init__(self, model: nn.Module, group, bucket_mb: float = 1.0):
        self.group = group
        self.sync = True  # set False while accumulating micro-batches (pipeline): finish() then does it all
        params = [p for p in model.parameters() if p.requires_grad]
        self.buckets: list[Bucket] = []
        current, size = [], 0
        for p in reversed(params):  # backward produces the last layers' gradients first
            current.append(p)
            size += p.numel() * p.element_size()
            if size >= bucket_mb * 2**20:
                self.buckets.append(Bucket(current))
                current, size = [], 0
        if current:
            self.buckets.append(Bucket(current))
        self._bucket_of = {id(p): b for b in self.buckets for p in b.params}
        for p in params:
            p.register_post_accumulate_grad_hook(self._grad_ready)

    def _grad_ready(self, p: nn.Parameter) -> None:
        if not self.sync:
            return
        bucket = self._bucket_of[id(p)]
        bucket.ready += 1
        if bucket.ready == len(bucket.params):
            bucket.start(self.group)

    def finish(self) -> None:
        """Call after `loss.backward()`: start the buckets that never filled (unused parameters), wait for all."""
        for bucket in self.buckets:
            if bucket.work is None:
                for p in bucket.params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                bucket.start(self.group)
        for bucket in self.buckets:
            bucket.finish()


def broadcast_parameters(model: nn.Module, group, src: int) -> None:
    """Copy the parameters of global rank `src` to every rank of `group` (start DP from identical weights)."""
    with torch.no_grad():
        for p in model.parameters():
            dist.broadcast(p.data, src=src, group=group)
