"""Grading tests for exercises/ch04_inference.py (paper §6): the KV-cache update, top-p sampling, temperature,
and greedy decoding with the cache.

Outside references: plain tensor expectations written in the test, transformers' `TopPLogitsWarper`, and
`transformers.LlamaForCausalLM.generate` on the same weights.
"""

import tempfile

import pytest
import torch

from minillama import ModelArgs, Transformer

CHAPTER = "ch04_inference"


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- 4.1 KV-cache update
@pytest.mark.points(2)
def test_kv_cache_prefill_then_one_step(impl):
    """Prefill 3 positions, then write 1 more at start_pos 3: each call returns keys/values of all positions so
    far, and the caches hold them in place (positions beyond stay zero)."""
    ck, cv = torch.zeros(2, 8, 2, 4), torch.zeros(2, 8, 2, 4)
    k1, v1 = torch.randn(2, 3, 2, 4, generator=gen(1)), torch.randn(2, 3, 2, 4, generator=gen(2))
    keys, values = impl.kv_cache_update(ck, cv, k1, v1, 0)
    torch.testing.assert_close(keys, k1)
    torch.testing.assert_close(values, v1)
    k2, v2 = torch.randn(2, 1, 2, 4, generator=gen(3)), torch.randn(2, 1, 2, 4, generator=gen(4))
    keys, values = impl.kv_cache_update(ck, cv, k2, v2, 3)
    assert keys.shape == (2, 4, 2, 4), f"expected (b, start_pos + s, kv, e) = (2, 4, 2, 4), got {tuple(keys.shape)}"
    torch.testing.assert_close(keys, torch.cat([k1, k2], dim=1))
    torch.testing.assert_close(values, torch.cat([v1, v2], dim=1))
    torch.testing.assert_close(ck[:, :4], torch.cat([k1, k2], dim=1), msg="the cache must be written in place")
    torch.testing.assert_close(cv[:, :4], torch.cat([v1, v2], dim=1), msg="the cache must be written in place")
    assert not ck[:, 4:].any() and not cv[:, 4:].any(), "positions after start_pos + s must stay untouched"


@pytest.mark.points(1)
def test_kv_cache_fewer_rows_than_allocated(impl):
    """A batch of 1 in a cache of 3 rows writes and returns row 0 only."""
    ck, cv = torch.zeros(3, 6, 1, 2), torch.zeros(3, 6, 1, 2)
    k, v = torch.ones(1, 2, 1, 2), torch.full((1, 2, 1, 2), 2.0)
    keys, values = impl.kv_cache_update(ck, cv, k, v, 2)
    assert keys.shape == (1, 4, 1, 2)
    torch.testing.assert_close(keys, torch.cat([torch.zeros(1, 2, 1, 2), k], dim=1))
    torch.testing.assert_close(values, torch.cat([torch.zeros(1, 2, 1, 2), v], dim=1))
    assert ck[1:].abs().sum() == 0 and cv[0, 2:4].eq(2).all()


# ---------------------------------------------------------------------- 4.2 top-p
PROBS = torch.tensor([0.06, 0.2, 0.04, 0.35, 0.1, 0.25])  # sorted: 0.35 (id 3), 0.25 (5), 0.2 (1), 0.1, ...


def hf_top_p_keep(probs, p):
    """Token ids transformers' TopPLogitsWarper keeps (it removes the tail whose mass is at most 1 - p)."""
    from transformers.generation.logits_process import TopPLogitsWarper

    scores = TopPLogitsWarper(top_p=p)(None, probs.log()[None])[0]
    return set(torch.nonzero(scores > float("-inf")).flatten().tolist())


def draw(impl, probs, p, n=4000, seed=0):
    out = impl.sample_top_p(probs.expand(n, -1).clone(), p, gen(seed))
    assert out.shape == (n, 1), f"expected token ids of shape (b, 1), got {tuple(out.shape)}"
    return out.flatten()


@pytest.mark.points(2)
def test_top_p_keeps_the_token_that_crosses_p(impl):
    """p = 0.75: 0.35 + 0.25 = 0.60 is still below p, so 0.2 (id 1) is kept too: the set {3, 5, 1}, as
    transformers' TopPLogitsWarper keeps, in vocabulary ids (not sorted positions)."""
    ids = draw(impl, PROBS, 0.75)
    assert set(ids.tolist()) == hf_top_p_keep(PROBS, 0.75) == {3, 5, 1}


@pytest.mark.points(2)
def test_top_p_frequencies_are_renormalised(impl):
    """Samples follow the kept probabilities renormalised: 0.35/0.8, 0.25/0.8, 0.2/0.8 (±0.03 over 4,000 draws)."""
    ids = draw(impl, PROBS, 0.75, seed=1)
    freq = torch.bincount(ids, minlength=6).double() / len(ids)
    for i, expected in ((3, 0.4375), (5, 0.3125), (1, 0.25)):
        assert abs(freq[i] - expected) < 0.03, f"token {i}: frequency {freq[i]:.3f}, expected {expected:.3f}"


@pytest.mark.points(1)
def test_top_p_small_p_is_greedy(impl):
    """p = 0.1 keeps only the most likely token (it alone crosses p); each row of a batch uses its own probs."""
    probs = torch.stack([PROBS, PROBS.flip(0)])
    out = impl.sample_top_p(probs, 0.1, gen(2))
    assert out.shape == (2, 1) and out.dtype == torch.int64
    assert out.flatten().tolist() == [3, 2]


# ---------------------------------------------------------------------- 4.3 temperature and next_token
LOGITS = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])


@pytest.mark.points(1)
def test_next_token_greedy_at_temperature_zero(impl):
    """Temperature 0 is argmax for every row; the result has shape (b,)."""
    logits = torch.randn(5, 11, generator=gen(3))
    out = impl.next_token(logits, 0.0, 0.9, gen(0))
    assert out.shape == (5,)
    assert out.tolist() == logits.argmax(-1).tolist()


@pytest.mark.points(2)
def test_next_token_divides_logits_by_temperature(impl):
    """Temperature 0.5, no top-p: frequencies follow softmax(logits / 0.5) (±0.03 over 4,000 draws)."""
    out = impl.next_token(LOGITS.expand(4000, -1).clone(), 0.5, 1.0, gen(4))
    freq = torch.bincount(out, minlength=5).double() / len(out)
    expected = torch.softmax(LOGITS.double() / 0.5, -1)
    assert (freq - expected).abs().max() < 0.03, f"frequencies {freq.tolist()} vs softmax(l/T) {expected.tolist()}"


@pytest.mark.points(1)
def test_next_token_applies_top_p_after_temperature(impl):
    """Temperature 2 flattens [0.5, 0.3, 0.15, 0.05] to [0.38, 0.29, 0.21, 0.12]; top-p 0.7 on *those* keeps
    three tokens (on the untempered ones it would keep two)."""
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    out = impl.next_token(logits.expand(3000, -1).clone(), 2.0, 0.7, gen(5))
    assert set(out.tolist()) == {0, 1, 2}


# ---------------------------------------------------------------------- 4.4 greedy decoding with the cache
@pytest.fixture(scope="module")
def twins():
    """A tiny random minillama model and transformers' LlamaForCausalLM with the same weights."""
    from transformers import LlamaForCausalLM

    from minillama.checkpoint import save_hf

    args = ModelArgs(
        dim=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=50,
        multiple_of=16,
        max_seq_len=64,
        max_batch_size=2,
        use_scaled_rope=False,
    )
    torch.manual_seed(0)
    model = Transformer(args).init_weights(std=0.3, seed=0).eval()
    with tempfile.TemporaryDirectory() as d:
        save_hf(model, d)
        hf = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    return model, hf


def hf_greedy(hf, prompt, n):
    out = hf.generate(
        torch.tensor([prompt]),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
    )
    return out[0, len(prompt) :].tolist()


PROMPT = [1, 7, 19, 3, 42, 11, 5]


@pytest.mark.points(3)
def test_greedy_matches_transformers_generate(impl, twins):
    """12 greedy tokens after a 7-token prompt equal LlamaForCausalLM.generate(do_sample=False) on the same weights."""
    model, hf = twins
    expected = hf_greedy(hf, PROMPT, 12)
    assert impl.greedy_generate(model, PROMPT, 12) == expected
    assert impl.greedy_generate(model, PROMPT[:2], 5) == hf_greedy(hf, PROMPT[:2], 5)


@pytest.mark.points(2)
def test_greedy_stops_before_the_stop_token(impl, twins):
    """With a stop token, the output ends just before its first occurrence (the stop token is not returned)."""
    model, hf = twins
    full = hf_greedy(hf, PROMPT, 12)
    stop = full[4]
    expected = full[: full.index(stop)]
    assert impl.greedy_generate(model, PROMPT, 12, stop_tokens=[stop]) == expected
    assert impl.greedy_generate(model, PROMPT, 12, stop_tokens=[49 if 49 not in full else 48]) == full
