"""generate(): cache vs no cache, unequal batches, stop tokens, seeding, and top-p against transformers' warper."""

import pytest
import torch

from minillama import ModelArgs, Transformer, generate
from minillama.generate import sample_top_p


@pytest.fixture(scope="module")
def model():
    args = ModelArgs(
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=61,
        multiple_of=16,
        ffn_dim_multiplier=None,
        max_seq_len=64,
        use_scaled_rope=False,
    )
    return Transformer(args).init_weights(std=0.3, seed=0).eval()


def test_greedy_with_cache_equals_recomputation(model):
    prompts = [[1, 5, 9, 2], [7, 3]]
    cached = generate(model, prompts, 20)
    recomputed = generate(model, prompts, 20, use_cache=False)
    assert cached == recomputed
    assert [len(r) for r in cached] == [20, 20]


def test_unequal_batch_equals_each_prompt_alone(model):
    prompts = [[1, 5, 9, 2, 8, 8], [7, 3], [4]]
    batch = generate(model, prompts, 12)
    alone = [generate(model, [p], 12)[0] for p in prompts]
    assert batch == alone


def test_hand_written_greedy_loop(model):
    """Against the plainest possible loop: full forward, argmax, append."""
    seq = [3, 1, 4, 1, 5]
    out = generate(model, [seq], 8)[0]
    with torch.no_grad():
        for _ in range(8):
            seq = seq + [int(model(torch.tensor([seq]))[0, -1].argmax())]
    assert out == seq[5:]


def test_stop_tokens_end_rows_independently(model):
    free = generate(model, [[1, 2, 3]], 15)[0]
    stop = free[4]
    out = generate(model, [[1, 2, 3]], 15, stop_tokens=[stop, 60])[0]
    assert out == free[: free.index(stop)]


def test_stop_tokens_may_be_any_iterable(model):
    """A generator of stop tokens is read once: the row still ends at the stop token, which is not in the output
    (reading it twice found the generator empty the second time, kept the stop token and padded with zeros)."""
    free = generate(model, [[1, 5, 9, 2]], 12)[0]
    stop = free[3]
    cut = free[: free.index(stop)]
    assert generate(model, [[1, 5, 9, 2]], 12, stop_tokens=iter([stop]))[0] == cut
    assert generate(model, [[1, 5, 9, 2]], 12, stop_tokens=(t for t in [stop, 60]))[0] == cut


def test_generate_says_which_stop_token_ended_each_row(model):
    """`return_stop=True` also returns, per row, the stop token that ended it (None: it ran out of tokens)."""
    prompts = [[1, 5, 9, 2], [7, 3]]
    free = generate(model, prompts, 12)
    stop = free[0][3]
    rows, stops = generate(model, prompts, 12, stop_tokens=[stop, 60], return_stop=True)
    assert rows == generate(model, prompts, 12, stop_tokens=[stop, 60])
    assert stops[0] == stop
    assert stops[1] == (stop if stop in free[1] else None)


def test_sampling_is_seeded(model):
    a = generate(model, [[1, 2], [3]], 15, temperature=1.0, top_p=0.9, seed=123)
    b = generate(model, [[1, 2], [3]], 15, temperature=1.0, top_p=0.9, seed=123)
    c = generate(model, [[1, 2], [3]], 15, temperature=1.0, top_p=0.9, seed=124)
    assert a == b and a != c


def test_top_p_support_matches_transformers_warper():
    """The set of tokens top-p can ever pick equals what transformers' TopPLogitsWarper keeps."""
    from transformers.generation.logits_process import TopPLogitsWarper

    torch.manual_seed(0)
    for p in (0.3, 0.5, 0.75, 0.9):
        logits = torch.randn(1, 12) * 2
        probs = logits.softmax(-1)
        kept_hf = set(torch.isfinite(TopPLogitsWarper(top_p=p)(None, logits.clone()))[0].nonzero().flatten().tolist())
        gen = torch.Generator().manual_seed(1)
        seen = {int(sample_top_p(probs, p, gen)) for _ in range(3000)}
        assert seen == kept_hf, p


def test_bad_arguments_raise(model):
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[]], 3)
    with pytest.raises(ValueError, match="exceed"):
        generate(model, [[1]], 1000)
    with pytest.raises(ValueError, match="token ids"):
        generate(model, [[999]], 3)


def test_context_limit_names_max_seq_len_and_negative_temperature_is_refused(model):
    """Past the model's context the error names max_seq_len (64 here), not the RoPE table (2 x 64); a negative
    temperature is an error, 0 stays greedy."""
    generate(model, [[1, 2]], 62)  # exactly fills the context
    with pytest.raises(ValueError, match=r"context \(max_seq_len = 64\).*at most 62"):
        generate(model, [[1, 2]], 63)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(model, [[1]], 3, temperature=-1.0)
    assert generate(model, [[1]], 3, temperature=0.0) == generate(model, [[1]], 3)


@pytest.mark.parametrize(
    "flags,expected",
    [(["--max-new-tokens", "100000"], "max_seq_len = "), (["--temperature", "-1"], "temperature must be >= 0")],
)
def test_generate_cli_bad_limits_are_one_line_errors(flags, expected, capsys):
    from minillama.cli import main

    assert main(["generate", "--prompt", "def", *flags]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and "RoPE" not in err
