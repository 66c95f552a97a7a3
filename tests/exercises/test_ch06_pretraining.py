"""Grading tests for exercises/ch06_pretraining.py (paper §3.4.1): LR schedule, batch ramp, packing, next-token
rows, the AdamW step and gradient clipping.

References: torch's LinearLR/CosineAnnealingLR, torch.optim.AdamW, torch.nn.utils.clip_grad_norm_, and the
formulas written out plainly here.
"""

import math

import numpy as np
import pytest
import torch

CHAPTER = "ch06_pretraining"


# ---------------------------------------------------------------------- 6.1 learning-rate schedule
@pytest.mark.points(2)
def test_lr_schedule_matches_torch_schedulers(impl):
    """Warmup then cosine equals torch's LinearLR followed by CosineAnnealingLR (SequentialLR), step by step."""
    max_lr, min_lr, warm, total = 3e-4, 3e-5, 8, 60
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=max_lr)
    sched = torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warm, end_factor=1.0, total_iters=warm - 1),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm, eta_min=min_lr),
        ],
        milestones=[warm],
    )
    for step in range(total):
        got = impl.lr_schedule(step, max_lr, min_lr, warm, total)
        assert got == pytest.approx(opt.param_groups[0]["lr"], rel=1e-5), f"step {step}"
        opt.step()
        sched.step()


@pytest.mark.points(1)
def test_lr_schedule_endpoints(impl):
    """The first step uses max_lr/warmup (not 0), warmup ends at the peak, and after max_steps the LR stays at
    min_lr (the 405B numbers: 8e-5 peak, 8e-7 floor)."""
    assert impl.lr_schedule(0, 8e-5, 8e-7, 8000, 1_200_000) == pytest.approx(8e-5 / 8000)
    assert impl.lr_schedule(7999, 8e-5, 8e-7, 8000, 1_200_000) == pytest.approx(8e-5)
    assert impl.lr_schedule(8000, 8e-5, 8e-7, 8000, 1_200_000) == pytest.approx(8e-5)
    assert impl.lr_schedule(604_000, 8e-5, 8e-7, 8000, 1_200_000) == pytest.approx((8e-5 + 8e-7) / 2)
    for step in (1_200_000, 2_000_000):
        assert impl.lr_schedule(step, 8e-5, 8e-7, 8000, 1_200_000) == pytest.approx(8e-7)


# ---------------------------------------------------------------------- 6.2 batch ramp
@pytest.mark.points(1)
def test_batch_ramp(impl):
    """The paper's ramp (in tokens per step, 4M -> 8M after 252M -> 16M after 2.87T) switches exactly at each
    threshold and keeps the last size."""
    ramp = ((0, 4_000_000), (252_000_000, 8_000_000), (2_870_000_000_000, 16_000_000))
    cases = {0: 4e6, 251_999_999: 4e6, 252_000_000: 8e6, 10**12: 8e6, 2_870_000_000_000: 16e6, 10**14: 16e6}
    for tokens, rows in cases.items():
        assert impl.batch_rows_at(tokens, ramp) == rows, f"after {tokens:,} tokens"


# ---------------------------------------------------------------------- 6.3 packing
@pytest.mark.points(2)
def test_pack_documents(impl):
    """Each document becomes [BOS] tokens [EOS] (the first, the last and an empty one too), as uint32."""
    out = impl.pack_documents([[10, 11], [], [12, 13, 14]], bos_id=1, eos_id=2)
    assert np.asarray(out).dtype == np.uint32
    assert np.asarray(out).tolist() == [1, 10, 11, 2, 1, 2, 1, 12, 13, 14, 2]
    big = impl.pack_documents([[128_000 + i] for i in range(3)], bos_id=128_000, eos_id=128_001)
    assert np.asarray(big).tolist()[:3] == [128_000, 128_000, 128_001]  # Llama 3 ids need more than 16 bits


# ---------------------------------------------------------------------- 6.4 inputs and targets
@pytest.mark.points(2)
def test_inputs_and_targets(impl):
    """Rows of seq_len inputs and targets shifted by one, cut at the given starts, int64."""
    stream = np.arange(100, 140, dtype=np.uint32)
    x, y = impl.inputs_and_targets(stream, [0, 7, 30], 8)
    assert x.dtype == torch.int64 and y.dtype == torch.int64 and tuple(x.shape) == tuple(y.shape) == (3, 8)
    assert x.tolist()[1] == list(range(107, 115))
    assert y.tolist()[1] == list(range(108, 116))
    assert y.tolist()[2][-1] == 138  # the last target is the (seq_len+1)-th token of the window


# ---------------------------------------------------------------------- 6.5 AdamW
@pytest.mark.points(3)
def test_adamw_step_matches_torch_adamw(impl):
    """Six steps of adamw_step equal torch.optim.AdamW (weights and both moments), weight decay 0.1."""
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(6, 5, generator=g)
    grads = [torch.randn(6, 5, generator=g) * (0.1 + i) for i in range(6)]
    p = torch.nn.Parameter(w0.clone())
    opt = torch.optim.AdamW([p], lr=3e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    w, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    for t, grad in enumerate(grads, start=1):
        p.grad = grad.clone()
        opt.step()
        w, m, v = impl.adamw_step(w, grad, m, v, t, 3e-2, (0.9, 0.95), 1e-8, 0.1)
        torch.testing.assert_close(w, p.detach(), rtol=1e-4, atol=1e-6, msg=f"weights after step {t}")
    torch.testing.assert_close(m, opt.state[p]["exp_avg"], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(v, opt.state[p]["exp_avg_sq"], rtol=1e-4, atol=1e-9)


@pytest.mark.points(1)
def test_adamw_decay_is_decoupled(impl):
    """With a zero gradient, AdamW only shrinks the weights by (1 - lr·wd); Adam with L2 would move them by ~lr."""
    w = torch.full((4,), 4.0)
    z = torch.zeros(4)
    new, _, _ = impl.adamw_step(w, z, z.clone(), z.clone(), 1, 0.1, (0.9, 0.95), 1e-8, 0.5)
    torch.testing.assert_close(new, w * (1 - 0.1 * 0.5))


# ---------------------------------------------------------------------- 6.6 clipping
@pytest.mark.points(2)
def test_clip_grad_norm_matches_torch(impl):
    """Clipping by the global norm equals torch.nn.utils.clip_grad_norm_ (norm and clipped gradients), and
    gradients already under the limit are unchanged."""
    g = torch.Generator().manual_seed(1)
    shapes = ((4, 3), (7,), (2, 2, 2))
    grads = [torch.randn(s, generator=g) * (i + 1) for i, s in enumerate(shapes)]
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for p, gr in zip(params, grads):
        p.grad = gr.clone()
    norm = torch.nn.utils.clip_grad_norm_(params, 2.0)
    clipped, total = impl.clip_grad_norm([gr.clone() for gr in grads], 2.0)
    assert float(total) == pytest.approx(float(norm), rel=1e-5)
    for c, p in zip(clipped, params):
        torch.testing.assert_close(c, p.grad)
    same, _ = impl.clip_grad_norm([gr.clone() for gr in grads], 1000.0)
    for s, gr in zip(same, grads):
        torch.testing.assert_close(s, gr)
    assert math.isfinite(float(total))
