"""Reference answers for exercises/ch11_dpo.py: wrappers around `minillama.posttrain` (paper §4.1.4)."""

from __future__ import annotations

from torch import Tensor

from minillama.posttrain import losses as _losses
from minillama.posttrain.data import formatting_mask as _formatting_mask
from minillama.posttrain.losses import dpo_total_loss  # noqa: F401  (the exercise's signature: beta 0.1, NLL 0.2)

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = ("minillama.posttrain",)


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float = 0.1,
) -> Tensor:
    """Per-example sigmoid DPO loss −log σ(β·[(π_c − π_r) − (ref_c − ref_r)]) on summed log-probs. (n,)×4 -> (n,)."""
    return _losses.dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)


def dpo_response_mask(tokens: Tensor, assistant_mask: Tensor, formatting_ids: list[int]) -> Tensor:
    """Tokens counted in DPO's log-probabilities: assistant tokens that are not formatting tokens (headers, eot, eom).
    tokens (..., s), assistant_mask (..., s) bool -> bool (..., s)."""
    return assistant_mask.bool() & ~_formatting_mask(tokens, formatting_ids)


def nll_term(chosen_token_logps: Tensor, chosen_mask: Tensor) -> Tensor:
    """Negative log-likelihood of the chosen responses: minus the mean token log-prob over all masked tokens of the
    batch (a token mean, as TRL's "sft" term). (n, s), (n, s) bool -> scalar."""
    return _losses.nll_term(chosen_token_logps, chosen_mask)
