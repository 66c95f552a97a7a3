"""Chapter 11 exercises: DPO with Llama 3's changes (paper §4.1.4).

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch11

or run the last cell of notebooks/11_dpo.ipynb. Log-probabilities are *sums* over response tokens (exercise 9.3).
Use torch only; do not import `minillama.posttrain` (that is the answer key).
"""

from __future__ import annotations

import torch.nn.functional as F  # noqa: F401  (F.logsigmoid is allowed)
from torch import Tensor


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float = 0.1,
) -> Tensor:
    """Per-example sigmoid DPO loss −log σ(β·[(π_c − π_r) − (ref_c − ref_r)]) on summed log-probs. (n,)×4 -> (n,)."""
    # Hints: the policy's log-ratio chosen-vs-rejected minus the reference's; β multiplies inside the sigmoid.
    # Check with the paper sheet's example: π_c=−10, π_r=−12, refs −11 -> 0.5981388694.
    raise NotImplementedError("Exercise 11.1: dpo_loss")


def dpo_response_mask(tokens: Tensor, assistant_mask: Tensor, formatting_ids: list[int]) -> Tensor:
    """Tokens counted in DPO's log-probabilities: assistant tokens that are not formatting tokens (headers, eot, eom).
    tokens (..., s), assistant_mask (..., s) bool -> bool (..., s)."""
    # Hints: torch.isin(tokens, torch.tensor(formatting_ids)) finds formatting tokens; combine with & and ~.
    raise NotImplementedError("Exercise 11.2: dpo_response_mask")


def nll_term(chosen_token_logps: Tensor, chosen_mask: Tensor) -> Tensor:
    """Negative log-likelihood of the chosen responses: minus the mean token log-prob over all masked tokens of the
    batch (a token mean, as TRL's "sft" term). (n, s), (n, s) bool -> scalar."""
    # Hints: the mean runs over the masked tokens of the whole batch (not over every position, not per row).
    raise NotImplementedError("Exercise 11.3: nll_term")


def dpo_total_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_token_logps: Tensor,
    chosen_mask: Tensor,
    beta: float = 0.1,
    nll_coef: float = 0.2,
) -> Tensor:
    """Llama 3's DPO objective: mean DPO loss + nll_coef · NLL of the chosen responses. Scalar."""
    # Hints: reuse dpo_loss and nll_term; the coefficient multiplies the NLL, not the DPO loss.
    raise NotImplementedError("Exercise 11.4: dpo_total_loss")
