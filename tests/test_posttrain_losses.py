"""DPO and reward-model losses against the paper's worked number and TRL's DPOTrainer (the outside reference)."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from minillama import ModelArgs, Transformer
from minillama.posttrain import dpo_loss
from minillama.posttrain.data import IGNORE_INDEX, sft_labels, token_logprobs
from minillama.posttrain.losses import bradley_terry_loss, dpo_total_loss

torch.set_num_threads(1)


def test_dpo_worked_example_from_the_fact_sheet():
    """FACTS.md §5: πw=−10, πl=−12, refs −11, β=0.1 -> 0.5981388694; plus 0.2·NLL with NLL 1.5 -> 0.8981388694."""
    t = lambda x: torch.tensor([x], dtype=torch.float64)
    loss = dpo_loss(t(-10.0), t(-12.0), t(-11.0), t(-11.0), beta=0.1)
    assert loss.shape == (1,)
    assert float(loss) == pytest.approx(0.5981388694, abs=1e-9)
    # an NLL of exactly 1.5: one chosen token with log-prob −1.5
    total = dpo_total_loss(
        t(-10.0),
        t(-12.0),
        t(-11.0),
        t(-11.0),
        torch.tensor([[-1.5]], dtype=torch.float64),
        torch.tensor([[True]]),
        beta=0.1,
        nll_coef=0.2,
    )
    assert float(total) == pytest.approx(0.8981388694, abs=1e-9)


def test_dpo_loss_is_per_example_and_matches_the_formula():
    """Per-example losses equal −log σ(β·h) written out with math.exp, for several β."""
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(6, generator=g, dtype=torch.float64) * 5 for _ in range(4))
    for beta in (0.1, 0.5):
        got = dpo_loss(pc, pr, rc, rr, beta=beta)
        for i in range(6):
            h = (pc[i] - pr[i]) - (rc[i] - rr[i])
            assert float(got[i]) == pytest.approx(math.log1p(math.exp(-beta * float(h))), rel=1e-10)


def test_bradley_terry_without_margin():
    """−log σ(r_c − r_r): log 2 at a tie, → 0 when chosen wins big, ≈ the gap when it loses big."""
    r_c = torch.tensor([0.0, 20.0, -20.0], dtype=torch.float64)
    r_r = torch.zeros(3, dtype=torch.float64)
    got = bradley_terry_loss(r_c, r_r)
    assert got[0] == pytest.approx(math.log(2))
    assert got[1] == pytest.approx(math.log1p(math.exp(-20)))
    assert got[2] == pytest.approx(20 + math.log1p(math.exp(-20)))


def _trl_dpo_loss(hf_policy, hf_ref, input_ids, attention_mask, completion_mask):
    """Run TRL 1.16's own `DPOTrainer._compute_loss` (sigmoid + 0.2·sft, β 0.1) on a batch [chosen; rejected]."""
    from trl import DPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
    add_fused_lm_head(hf_policy, outputs=outputs)
    add_fused_lm_head(hf_ref)
    trainer = object.__new__(DPOTrainer)  # only the loss: no dataset, no optimiser
    identity = lambda x: x
    trainer.__dict__.update(
        model=hf_policy,
        ref_model=hf_ref,
        accelerator=SimpleNamespace(device="cpu", gather_for_metrics=identity, gather=identity),
        aux_loss_enabled=False,
        precompute_ref_logps=False,
        ld_alpha=None,
        f_divergence_type="reverse_kl",
        loss_types=["sigmoid", "sft"],
        loss_weights=[1.0, 0.2],
        beta=0.1,
        use_weighting=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        args=SimpleNamespace(gradient_checkpointing_kwargs=None),
    )
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}
    with torch.no_grad():
        loss = trainer._compute_loss(hf_policy, inputs, return_outputs=False)
    return loss, trainer._metrics["train" if hf_policy.training else "eval"]


def test_dpo_total_loss_equals_trl_on_the_same_logprobs_and_masks():
    """Our DPO objective (sigmoid, β 0.1, summed masked log-probs, 0.2·token-mean NLL on chosen) equals TRL 1.16's
    DPOTrainer loss with loss_type=["sigmoid","sft"], loss_weights=[1.0, 0.2] on the same weights and masks; the
    masks drop prompt tokens and some formatting tokens inside the responses."""
    pytest.importorskip("trl")
    from tests.hf_reference import hf_twin

    args = ModelArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=97, multiple_of=16, max_seq_len=64)
    policy = Transformer(args).init_weights(std=0.3, seed=1).eval()
    ref = Transformer(args).init_weights(std=0.3, seed=2).eval()
    g = torch.Generator().manual_seed(3)
    n, s = 3, 14
    tokens = torch.randint(1, 97, (2 * n, s), generator=g)  # rows 0..n-1 chosen, n..2n-1 rejected
    completion = torch.zeros(2 * n, s, dtype=torch.bool)
    lengths = [14, 11, 9, 13, 14, 10]
    starts = [5, 4, 6, 5, 3, 6]
    for i, (start, length) in enumerate(zip(starts, lengths)):
        completion[i, start:length] = True
    completion[0, 8] = completion[4, 5] = False  # formatting tokens masked inside responses
    attention = torch.zeros(2 * n, s, dtype=torch.long)
    for i, length in enumerate(lengths):
        attention[i, :length] = 1
        tokens[i, length:] = 0  # right padding

    trl_loss, metrics = _trl_dpo_loss(hf_twin(policy), hf_twin(ref), tokens, attention, completion.long())

    with torch.no_grad():
        labels = sft_labels(tokens, completion)
        pol_tok = token_logprobs(policy(tokens), labels)
        ref_tok = token_logprobs(ref(tokens), labels)
    pol, refs = pol_tok.sum(-1), ref_tok.sum(-1)
    ours = dpo_total_loss(pol[:n], pol[n:], refs[:n], refs[n:], pol_tok[:n], labels[:n] != IGNORE_INDEX)
    assert float(ours) == pytest.approx(float(trl_loss), rel=1e-5, abs=1e-6)
    # and the sequence log-probs TRL logged are ours
    assert metrics["logps/chosen"][0] == pytest.approx(float(pol[:n].mean()), rel=1e-5)
    assert metrics["logps/rejected"][0] == pytest.approx(float(pol[n:].mean()), rel=1e-5)
