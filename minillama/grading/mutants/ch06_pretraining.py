"""Common mistakes in exercises/ch06_pretraining.py; each must fail at least one test."""

from __future__ import annotations

import math

import numpy as np
import torch

from minillama.grading.reference import ch06_pretraining as ref


def _cosine_to_zero(step, max_lr, min_lr, warmup_steps, max_steps):
    # forgets the floor: decays to 0 instead of min_lr
    return ref.lr_schedule(step, max_lr, 0.0, warmup_steps, max_steps)


def _cosine_over_all_steps(step, max_lr, min_lr, warmup_steps, max_steps):
    # measures cosine progress from step 0 instead of from the end of warmup
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, step / max_steps)
    return min_lr + (max_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def _warmup_from_zero(step, max_lr, min_lr, warmup_steps, max_steps):
    # warmup starts at lr 0 on the first step (step / warmup instead of (step + 1) / warmup): a wasted step
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    return ref.lr_schedule(step, max_lr, min_lr, warmup_steps, max_steps)


def _ramp_first_match(tokens_seen, ramp):
    # stops at the first threshold passed, so the batch never grows
    for threshold, rows in ramp:
        if tokens_seen >= threshold:
            return rows
    raise ValueError("empty ramp")


def _ramp_strict(tokens_seen, ramp):
    # switches one token late: '>' instead of '>='
    rows = ramp[0][1]
    for threshold, r in ramp:
        if tokens_seen > threshold:
            rows = r
    return rows


def _pack_eos_only(docs_tokens, bos_id, eos_id):
    # separates documents with EOS but never marks a start with BOS
    parts = [np.asarray(list(d) + [eos_id], dtype=np.uint32) for d in docs_tokens]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)


def _pack_between_only(docs_tokens, bos_id, eos_id):
    # puts the boundary only *between* documents ("join"), so the first has no BOS and the last no EOS
    out = []
    for i, d in enumerate(docs_tokens):
        if i:
            out += [eos_id, bos_id]
        out += list(d)
    return np.asarray(out, dtype=np.uint32)


def _targets_not_shifted(stream, starts, seq_len):
    # targets equal to the inputs: the model learns to copy, not to predict the next token
    x, _ = ref.inputs_and_targets(stream, starts, seq_len)
    return x, x.clone()


def _windows_of_seq_len(stream, starts, seq_len):
    # cuts seq_len tokens and shifts inside them, so rows are one token short and padded with the last input
    rows = torch.tensor(np.stack([np.asarray(stream[s : s + seq_len], dtype=np.int64) for s in starts]))
    targets = torch.cat([rows[:, 1:], rows[:, -1:]], dim=1)
    return rows, targets


def _adam_l2(param, grad, exp_avg, exp_avg_sq, step, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
    # Adam with L2 regularisation (decay added to the gradient, then rescaled by Adam), not decoupled AdamW
    g = grad + weight_decay * param
    return ref.adamw_step(param, g, exp_avg, exp_avg_sq, step, lr, betas, eps, 0.0)


def _adam_no_bias_correction(param, grad, exp_avg, exp_avg_sq, step, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
    # skips the bias correction, so early steps are far too small
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    m = b1 * exp_avg + (1 - b1) * grad
    v = b2 * exp_avg_sq + (1 - b2) * grad * grad
    return param - lr * m / (v.sqrt() + eps), m, v


def _clip_per_tensor(grads, max_norm):
    # clips each tensor to max_norm on its own instead of the global norm of all of them
    out = [g * min(1.0, max_norm / (float(g.norm()) + 1e-6)) for g in grads]
    total = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
    return out, total


def _clip_always_rescale(grads, max_norm):
    # rescales to max_norm even when the norm is already smaller (blows small gradients up)
    total = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
    return [g * (max_norm / (total + 1e-6)) for g in grads], total


MUTANTS = {
    "cosine-decays-to-zero": {"lr_schedule": _cosine_to_zero},
    "cosine-progress-ignores-warmup": {"lr_schedule": _cosine_over_all_steps},
    "warmup-starts-at-zero": {"lr_schedule": _warmup_from_zero},
    "ramp-first-match": {"batch_rows_at": _ramp_first_match},
    "ramp-off-by-one-token": {"batch_rows_at": _ramp_strict},
    "pack-eos-only": {"pack_documents": _pack_eos_only},
    "pack-boundaries-between-only": {"pack_documents": _pack_between_only},
    "targets-not-shifted": {"inputs_and_targets": _targets_not_shifted},
    "window-of-seq-len-not-plus-one": {"inputs_and_targets": _windows_of_seq_len},
    "adam-l2-not-decoupled": {"adamw_step": _adam_l2},
    "adam-no-bias-correction": {"adamw_step": _adam_no_bias_correction},
    "clip-per-tensor": {"clip_grad_norm": _clip_per_tensor},
    "clip-always-rescales": {"clip_grad_norm": _clip_always_rescale},
}
