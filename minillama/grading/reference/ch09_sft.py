"""Reference answers for exercises/ch09_sft.py: thin wrappers around `minillama.posttrain.data` (paper §4.1.3)."""

from __future__ import annotations

import torch
from torch import Tensor

from minillama.posttrain import data as _data

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = ("minillama.posttrain",)


def assistant_loss_mask(roles: list[str]) -> Tensor:
    """Per-token roles from `ChatFormat.encode_dialog_with_roles` -> bool (s,): True for the tokens the assistant
    wrote (its content and its closing eot/eom), False for bos, headers, system, user and tool tokens."""
    return torch.tensor(_data.assistant_mask(roles), dtype=torch.bool)


def sft_labels(tokens: Tensor, loss_mask: Tensor) -> Tensor:
    """tokens (s,) or (b, s), loss_mask same shape -> labels: labels[t] = tokens[t+1] when loss_mask[t+1], else -100;
    the last position is always -100 (nothing follows it)."""
    return _data.sft_labels(tokens, loss_mask)


def sequence_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """logits (b, s, v), labels (b, s) with -100 where ignored -> (b,): the *sum* of log p(labels[t]) over the
    labelled positions."""
    return _data.sequence_logprobs(logits, labels)


def document_causal_mask(doc_ids: Tensor) -> Tensor:
    """doc_ids (b, s) (-1 on padding) -> bool (b, 1, s, s): query i may see key j iff j <= i and both are in the same
    document; a padding position sees only itself."""
    return _data.document_causal_mask(doc_ids)
