"""Grading tests for exercises/ch09_sft.py (paper §4.1.3): the assistant-only loss mask, next-token labels,
sequence log-probabilities, and the packing mask.

References: ChatFormat's rendering of a real dialog (the prompt is exactly `encode_dialog_prompt`), loops written out
in the tests, `F.cross_entropy`, and `F.scaled_dot_product_attention` on separate documents.
"""

import pytest
import torch
import torch.nn.functional as F

CHAPTER = "ch09_sft"
IGNORE = -100


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def chat_format():
    from minillama.posttrain.common import load_chat_format

    return load_chat_format()


DIALOG = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Reverse this list: 1 2 3"},
    {"role": "assistant", "content": "3 2 1"},
    {"role": "user", "content": "Now sort it."},
    {"role": "assistant", "content": "1 2 3"},
]


# ---------------------------------------------------------------------- 9.1 assistant-only loss mask
@pytest.mark.points(2)
def test_mask_is_exactly_the_assistant_turns(impl, chat_format):
    """On a two-turn dialog the masked tokens decode to the two answers, each followed by <|eot_id|>; the system
    prompt, user turns, bos and every header are not trained."""
    tokens, roles = chat_format.encode_dialog_with_roles(DIALOG)
    mask = impl.assistant_loss_mask(roles)
    assert mask.dtype == torch.bool and mask.shape == (len(tokens),)
    picked = [t for t, m in zip(tokens, mask.tolist()) if m]
    eot = chat_format.eot_id
    assert picked.count(eot) == 2 and picked[-1] == eot, "each assistant turn must end with its eot as a target"
    text = chat_format.tokenizer.decode([t for t in picked if t != eot])
    assert text == "3 2 11 2 3"


@pytest.mark.points(1)
def test_mask_excludes_the_whole_prompt(impl, chat_format):
    """Every token of `encode_dialog_prompt(first two messages)` (the prompt of the first answer) is unmasked."""
    tokens, roles = chat_format.encode_dialog_with_roles(DIALOG)
    prompt = chat_format.encode_dialog_prompt(DIALOG[:2])
    assert tokens[: len(prompt)] == prompt
    assert not impl.assistant_loss_mask(roles)[: len(prompt)].any()


# ---------------------------------------------------------------------- 9.2 labels
def _labels_by_hand(tokens, mask):
    out = []
    for row_t, row_m in zip(tokens.tolist(), mask.tolist()):
        out.append([row_t[i + 1] if row_m[i + 1] else IGNORE for i in range(len(row_t) - 1)] + [IGNORE])
    return torch.tensor(out)


@pytest.mark.points(2)
def test_sft_labels_shift_by_one_and_ignore(impl):
    """labels[t] = tokens[t+1] if mask[t+1] else -100, last -100: compared with a loop on random rows."""
    tokens = torch.randint(0, 50, (3, 12), generator=gen(1))
    mask = torch.rand(3, 12, generator=gen(2)) > 0.4
    assert torch.equal(impl.sft_labels(tokens, mask), _labels_by_hand(tokens, mask))


@pytest.mark.points(1)
def test_sft_labels_one_dimensional(impl):
    """Works on a single (s,) row too; a mask on the last token only gives all -100 but one."""
    tokens = torch.tensor([5, 6, 7, 8])
    mask = torch.tensor([False, False, False, True])
    assert impl.sft_labels(tokens, mask).tolist() == [IGNORE, IGNORE, 8, IGNORE]


# ---------------------------------------------------------------------- 9.3 sequence log-probs
@pytest.mark.points(2)
def test_sequence_logprobs_equals_minus_summed_cross_entropy(impl):
    """Sum over labelled positions of log p = −sum of F.cross_entropy(reduction='none', ignore_index=-100)."""
    logits = torch.randn(3, 9, 11, generator=gen(3)) * 2
    labels = torch.randint(0, 11, (3, 9), generator=gen(4))
    labels[0, :4] = IGNORE
    labels[1, 2:] = IGNORE
    labels[2, ::2] = IGNORE
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="none")
    want = -ce.view(3, 9).sum(-1)
    torch.testing.assert_close(impl.sequence_logprobs(logits, labels), want, atol=1e-5, rtol=1e-5)


@pytest.mark.points(1)
def test_sequence_logprobs_adds_up_over_length(impl):
    """A response twice as long (same per-token probability) has twice the log-probability: a sum, not a mean."""
    logits = torch.zeros(2, 6, 4)  # uniform: every token has log p = −log 4
    labels = torch.tensor([[1, 2, IGNORE, IGNORE, IGNORE, IGNORE], [1, 2, 3, 0, IGNORE, IGNORE]])
    got = impl.sequence_logprobs(logits, labels)
    torch.testing.assert_close(got, torch.tensor([-2, -4]) * torch.log(torch.tensor(4.0)))


# ---------------------------------------------------------------------- 9.4 packing mask
@pytest.mark.points(2)
def test_document_mask_matches_a_loop(impl):
    """Entry (i, j) is True iff j <= i and doc[i] == doc[j] (or i == j on padding); shape (b, 1, s, s)."""
    doc_ids = torch.tensor([[0, 0, 0, 1, 1, 2, -1, -1], [0, 1, 1, 1, 1, 1, 1, 1]])
    got = impl.document_causal_mask(doc_ids)
    assert got.shape == (2, 1, 8, 8) and got.dtype == torch.bool
    d = doc_ids.tolist()
    want = torch.tensor(
        [[[[(j <= i and d[b][i] == d[b][j]) or i == j for j in range(8)] for i in range(8)]] for b in range(2)]
    )
    assert torch.equal(got, want)


@pytest.mark.points(2)
def test_packed_attention_equals_separate_attention(impl):
    """Attention over a packed row with the mask equals attention over each document alone (torch SDPA)."""
    doc_ids = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    q, k, v = (torch.randn(1, 2, 7, 8, generator=gen(i)) for i in (5, 6, 7))
    packed = F.scaled_dot_product_attention(q, k, v, attn_mask=impl.document_causal_mask(doc_ids))
    first = F.scaled_dot_product_attention(q[..., :4, :], k[..., :4, :], v[..., :4, :], is_causal=True)
    second = F.scaled_dot_product_attention(q[..., 4:, :], k[..., 4:, :], v[..., 4:, :], is_causal=True)
    torch.testing.assert_close(packed, torch.cat([first, second], dim=2), atol=1e-5, rtol=1e-5)
