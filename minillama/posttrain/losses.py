"""The preference losses of Llama 3's post-training, on plain tensors (paper §4.1.2, §4.1.4).

* Reward model (Bradley–Terry, Llama 2's objective **without the margin term**):
  `L = −log σ(r(x, y_c) − r(x, y_r))`.
* DPO (Rafailov et al. 2023) with β = 0.1 on sequence log-probabilities (sums over response tokens, formatting
  tokens masked out):
  `h = (log π(y_c) − log π(y_r)) − (log π_ref(y_c) − log π_ref(y_r))`,  `L = −log σ(β·h)`.
* Plus an NLL term with coefficient 0.2 on the chosen responses (Pang et al. 2024), here the token-mean negative
  log-likelihood over all chosen response tokens of the batch, as TRL computes its "sft" loss term.

Worked example (checked in tests/exercises/test_ch11_dpo.py): π_c = −10, π_r = −12, both references −11, β = 0.1
→ h = 2, L = −log σ(0.2) = 0.5981388694; with an NLL of 1.5 the total is L + 0.2·1.5 = 0.8981388694.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

DPO_BETA = 0.1  # (paper §4.1.4)
NLL_COEF = 0.2  # (paper §4.1.4), following Pang et al. (2024)


def bradley_terry_loss(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Tensor:
    """Per-pair reward-model loss −log σ(r_c − r_r), no margin (paper §4.1.2). (n,), (n,) -> (n,)."""
    return -F.logsigmoid(chosen_rewards - rejected_rewards)


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float = DPO_BETA,
) -> Tensor:
    """Per-example sigmoid DPO loss −log σ(β·[(π_c − π_r) − (ref_c − ref_r)]). Inputs (n,) summed log-probs -> (n,)."""
    logits = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * logits)


def implicit_rewards(policy_logps: Tensor, ref_logps: Tensor, beta: float = DPO_BETA) -> Tensor:
    """DPO's implicit reward β·(log π(y) − log π_ref(y)) of each response (n,)."""
    return beta * (policy_logps - ref_logps).detach()


def nll_term(chosen_token_logps: Tensor, chosen_mask: Tensor) -> Tensor:
    """Token-mean negative log-likelihood of the chosen responses: −mean of token log-probs where mask is True.
    chosen_token_logps (n, s), chosen_mask (n, s) bool -> scalar."""
    mask = chosen_mask.bool()
    return -(chosen_token_logps * mask).sum() / mask.sum().clamp(min=1)


def dpo_total_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_token_logps: Tensor,
    chosen_mask: Tensor,
    beta: float = DPO_BETA,
    nll_coef: float = NLL_COEF,
) -> Tensor:
    """Llama 3's DPO objective for a batch: mean sigmoid DPO loss + nll_coef · NLL(chosen). Scalar."""
    pref = dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    return pref.mean() + nll_coef * nll_term(chosen_token_logps, chosen_mask)
