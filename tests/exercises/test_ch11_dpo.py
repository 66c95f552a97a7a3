"""Grading tests for exercises/ch11_dpo.py (paper §4.1.4): the DPO loss, the formatting-token mask, the NLL term and
the total objective.

References: the paper fact sheet's worked number (FACTS.md §5: 0.5981388694, and 0.8981388694 with NLL 1.5), the
formula log(1 + e^−βh) written with math, ChatFormat's rendering of a real dialog, and masked means by hand.
"""

import math

import pytest
import torch

CHAPTER = "ch11_dpo"
t64 = lambda *xs: torch.tensor(xs, dtype=torch.float64)


# ---------------------------------------------------------------------- 11.1 DPO loss
@pytest.mark.points(2)
def test_dpo_worked_example(impl):
    """π_c=−10, π_r=−12, both references −11, β=0.1 -> −log σ(0.2) = 0.5981388694 (FACTS.md §5)."""
    got = impl.dpo_loss(t64(-10.0), t64(-12.0), t64(-11.0), t64(-11.0), beta=0.1)
    assert float(got[0]) == pytest.approx(0.5981388694, abs=1e-8)


@pytest.mark.points(2)
def test_dpo_loss_per_example_formula(impl):
    """Per example log(1 + exp(−β·h)), h = (π_c − π_r) − (ref_c − ref_r), for β 0.1 and 0.5; shape (n,)."""
    pc, pr, rc, rr = t64(-5, -20, -3, -40), t64(-7, -18, -9, -41), t64(-6, -19, -2, -30), t64(-6, -25, -8, -45)
    for beta in (0.1, 0.5):
        got = impl.dpo_loss(pc, pr, rc, rr, beta=beta)
        assert got.shape == (4,)
        for i in range(4):
            h = (float(pc[i]) - float(pr[i])) - (float(rc[i]) - float(rr[i]))
            assert float(got[i]) == pytest.approx(math.log1p(math.exp(-beta * h)), rel=1e-9)


# ---------------------------------------------------------------------- 11.2 formatting-token mask
@pytest.mark.points(2)
def test_response_mask_drops_eot_and_headers(impl):
    """On a rendered dialog (course tokenizer, ChatFormat) the DPO mask keeps exactly the answer's words: no eot, no
    header, no prompt."""
    from minillama.posttrain.common import load_chat_format

    cf = load_chat_format()
    msgs = [{"role": "user", "content": "Sort: 3 1 2"}, {"role": "assistant", "content": "1 2 3"}]
    ids, roles = cf.encode_dialog_with_roles(msgs)
    tokens = torch.tensor(ids)
    assistant = torch.tensor([r == "assistant" for r in roles])
    fmt = [cf.bos_id, cf.start_header_id, cf.end_header_id, cf.eot_id, cf.eom_id]
    got = impl.dpo_response_mask(tokens, assistant, fmt)
    assert got.dtype == torch.bool and got.shape == tokens.shape
    assert cf.tokenizer.decode(tokens[got].tolist()) == "1 2 3"
    assert got.sum() == assistant.sum() - 1  # only the eot left the assistant's tokens


@pytest.mark.points(1)
def test_response_mask_batched(impl):
    """Works on (b, s) rows; a formatting id inside the assistant span is dropped, one outside stays unmasked."""
    tokens = torch.tensor([[1, 9, 5, 6, 9], [9, 4, 4, 8, 2]])
    assistant = torch.tensor([[False, False, True, True, True], [False, True, True, True, True]])
    got = impl.dpo_response_mask(tokens, assistant, [9, 8])
    assert got.tolist() == [[False, False, True, True, False], [False, True, True, False, True]]


# ---------------------------------------------------------------------- 11.3 NLL term
@pytest.mark.points(2)
def test_nll_is_a_token_mean_over_the_batch(impl):
    """Rows with 1 and 3 masked tokens: −(sum of the 4 log-probs)/4, not a per-row mean, not over all positions."""
    tok = torch.tensor([[-1.0, -9.0, 0.0, 0.0], [-2.0, -3.0, -4.0, -7.0]])
    mask = torch.tensor([[True, False, False, False], [True, True, True, False]])
    assert float(impl.nll_term(tok, mask)) == pytest.approx((1 + 2 + 3 + 4) / 4)


# ---------------------------------------------------------------------- 11.4 total loss
@pytest.mark.points(2)
def test_total_loss_worked_example(impl):
    """The worked example with a chosen NLL of exactly 1.5 -> 0.5981388694 + 0.2·1.5 = 0.8981388694."""
    got = impl.dpo_total_loss(
        t64(-10.0),
        t64(-12.0),
        t64(-11.0),
        t64(-11.0),
        t64(-1.0, -2.0)[None],
        torch.tensor([[True, True]]),
        beta=0.1,
        nll_coef=0.2,
    )
    assert float(got) == pytest.approx(0.8981388694, abs=1e-8)


@pytest.mark.points(1)
def test_total_loss_batch_formula(impl):
    """Three pairs: mean of the per-pair DPO losses + nll_coef × token-mean NLL, for coefficients 0.2 and 1.0."""
    pc, pr, rc, rr = t64(-5, -20, -3), t64(-7, -18, -9), t64(-6, -19, -2), t64(-6, -25, -8)
    tok = t64(-0.5, -1.5, -2.0, -0.1, -0.2, -0.3).view(3, 2)
    mask = torch.tensor([[True, True], [True, False], [False, True]])
    dpo = (
        sum(
            math.log1p(math.exp(-0.1 * ((float(pc[i]) - float(pr[i])) - (float(rc[i]) - float(rr[i])))))
            for i in range(3)
        )
        / 3
    )
    nll = (0.5 + 1.5 + 2.0 + 0.3) / 4
    for coef in (0.2, 1.0):
        got = impl.dpo_total_loss(pc, pr, rc, rr, tok, mask, beta=0.1, nll_coef=coef)
        assert float(got) == pytest.approx(dpo + coef * nll, rel=1e-9)
