"""Common mistakes for the chapter 09 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def _labels(tokens, mask, how):
    labels = torch.full_like(tokens, IGNORE)
    if how == "no-shift":  # predicts the token at t instead of t+1
        return torch.where(mask.bool(), tokens, labels)
    if how == "mask-at-t":  # tests the mask at the input position instead of the predicted one
        labels[..., :-1] = torch.where(mask[..., :-1].bool(), tokens[..., 1:], torch.full_like(tokens[..., 1:], IGNORE))
        return labels
    if how == "wrap-around":  # uses roll, so the last position predicts the first token
        return torch.where(mask.roll(-1, -1).bool(), tokens.roll(-1, -1), labels)
    raise ValueError(how)


def _seq_logps(logits, labels, how):
    keep = labels != IGNORE
    logp = torch.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0] * keep
    if how == "mean":  # averages over response tokens: long and short responses no longer comparable
        return logp.sum(-1) / keep.sum(-1).clamp(min=1)
    if how == "unmasked":  # sums over every position, prompt included
        full = torch.log_softmax(logits.float(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        return full.sum(-1)
    if how == "probs":  # sums probabilities, not log-probabilities
        return (F.softmax(logits.float(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0] * keep).sum(-1)
    raise ValueError(how)


def _doc_mask(doc_ids, how):
    s = doc_ids.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool).tril()
    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    eye = torch.eye(s, dtype=torch.bool)
    if how == "causal-only":  # packed dialogs attend to each other
        return causal.expand(doc_ids.shape[0], 1, s, s).clone()
    if how == "not-causal":  # same document but future tokens visible
        return (same | eye)[:, None]
    raise ValueError(how)


MUTANTS = {
    # loss mask keeps the prompt: trains on everything but the headers
    "mask-keeps-prompt": {"assistant_loss_mask": lambda roles: torch.tensor([r != "format" for r in roles])},
    # also trains on bos and the header tokens
    "mask-keeps-headers": {
        "assistant_loss_mask": lambda roles: torch.tensor([r in ("assistant", "format") for r in roles])
    },
    # forgets the closing eot: the model never learns to stop
    "mask-drops-eot": {
        "assistant_loss_mask": lambda roles: torch.tensor(
            [r == "assistant" and i + 1 < len(roles) and roles[i + 1] == "assistant" for i, r in enumerate(roles)]
        )
    },
    "labels-no-shift": {"sft_labels": lambda t, m: _labels(t, m, "no-shift")},
    "labels-mask-at-input": {"sft_labels": lambda t, m: _labels(t, m, "mask-at-t")},
    "labels-wrap-around": {"sft_labels": lambda t, m: _labels(t, m, "wrap-around")},
    "logps-mean-not-sum": {"sequence_logprobs": lambda lg, lb: _seq_logps(lg, lb, "mean")},
    "logps-unmasked": {"sequence_logprobs": lambda lg, lb: _seq_logps(lg, lb, "unmasked")},
    "logps-probabilities": {"sequence_logprobs": lambda lg, lb: _seq_logps(lg, lb, "probs")},
    "packing-leaks": {"document_causal_mask": lambda d: _doc_mask(d, "causal-only")},
    "packing-not-causal": {"document_causal_mask": lambda d: _doc_mask(d, "not-causal")},
}
