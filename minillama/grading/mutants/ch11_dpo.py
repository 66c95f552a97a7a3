"""Common mistakes for the chapter 11 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _nll(tok, mask, how):
    m = mask.bool()
    if how == "sum":  # a sum over tokens: scales with batch size and length
        return -(tok * m).sum()
    if how == "all-positions":  # averages over padding and prompt positions too
        return -(tok * m).sum() / m.numel()
    if how == "sign":  # the log-likelihood, not its negative
        return (tok * m).sum() / m.sum()
    raise ValueError(how)


def _dpo_mean(pc, pr, rc, rr, beta):
    return (-F.logsigmoid(beta * ((pc - pr) - (rc - rr)))).mean()


def _nll_ok(tok, mask):
    m = mask.bool()
    return -(tok * m).sum() / m.sum().clamp(min=1)


MUTANTS = {
    # sign flip: prefers the rejected response
    "dpo-sign-flip": {"dpo_loss": lambda pc, pr, rc, rr, beta=0.1: -F.logsigmoid(-beta * ((pc - pr) - (rc - rr)))},
    # forgets the reference model
    "dpo-no-reference": {"dpo_loss": lambda pc, pr, rc, rr, beta=0.1: -F.logsigmoid(beta * (pc - pr))},
    # beta outside the sigmoid
    "dpo-beta-outside": {"dpo_loss": lambda pc, pr, rc, rr, beta=0.1: -beta * F.logsigmoid((pc - pr) - (rc - rr))},
    # reference subtracted the wrong way round
    "dpo-reference-swapped": {
        "dpo_loss": lambda pc, pr, rc, rr, beta=0.1: -F.logsigmoid(beta * ((pc - pr) + (rc - rr)))
    },
    # keeps eot/eom and headers in the response log-probs
    "mask-keeps-formatting": {"dpo_response_mask": lambda t, a, ids: a.bool()},
    # drops formatting tokens but also counts the prompt
    "mask-keeps-prompt": {"dpo_response_mask": lambda t, a, ids: ~torch.isin(t, torch.as_tensor(list(ids)))},
    "nll-sum": {"nll_term": lambda tok, m: _nll(tok, m, "sum")},
    "nll-all-positions": {"nll_term": lambda tok, m: _nll(tok, m, "all-positions")},
    "nll-sign": {"nll_term": lambda tok, m: _nll(tok, m, "sign")},
    # TRL <= 0.9.6's ordering: 0.2·DPO + NLL instead of DPO + 0.2·NLL
    "total-coef-on-dpo": {
        "dpo_total_loss": lambda pc, pr, rc, rr, tok, m, beta=0.1, nll_coef=0.2: (
            nll_coef * _dpo_mean(pc, pr, rc, rr, beta) + _nll_ok(tok, m)
        )
    },
    # drops the NLL term
    "total-no-nll": {
        "dpo_total_loss": lambda pc, pr, rc, rr, tok, m, beta=0.1, nll_coef=0.2: _dpo_mean(pc, pr, rc, rr, beta)
    },
}
