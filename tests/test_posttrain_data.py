"""Chat rows for post-training: assistant-only masks from ChatFormat, labels, packing without leaks, the loader."""

import pytest
import torch

from minillama import ModelArgs, Transformer
from minillama.posttrain import tasks as T
from minillama.posttrain.data import (
    IGNORE_INDEX,
    Example,
    dialog_formatting_ids,
    document_causal_mask,
    forward,
    masked_cross_entropy,
    pack_examples,
    pad_examples,
    render,
    sequence_logprobs,
    sft_labels,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def chat_format():
    from minillama.posttrain.common import load_chat_format

    return load_chat_format()


def test_assistant_mask_covers_exactly_the_answer_and_its_eot(chat_format):
    """Targets are the assistant's content tokens plus its closing <|eot_id|>; prompt, headers and bos are not."""
    task = T.Task("max", (3, 1, 2))
    ex = render(chat_format, task.messages("The answer is 3", system=True))
    target_ids = [t for t, m in zip(ex.tokens, ex.target) if m]
    assert target_ids[-1] == chat_format.eot_id
    assert chat_format.tokenizer.decode(target_ids[:-1]) == "The answer is 3"
    # everything before the assistant's first token is the prompt: system, user, and the assistant header
    first = ex.target.index(True)
    prompt = chat_format.encode_dialog_prompt(task.messages(system=True))
    assert ex.tokens[:first] == prompt
    assert not any(ex.target[:first])


def test_dpo_render_masks_formatting_tokens(chat_format):
    """With the formatting ids excluded the eot leaves the targets; the words stay."""
    task = T.Task("last", (5, 6, 7))
    ex = render(chat_format, task.messages("7 it is"), exclude_ids=dialog_formatting_ids(chat_format))
    target_ids = [t for t, m in zip(ex.tokens, ex.target) if m]
    assert chat_format.eot_id not in target_ids
    assert chat_format.tokenizer.decode(target_ids) == "7 it is"


def test_sft_labels_shift_and_ignore():
    """labels[t] = tokens[t+1] where t+1 is a target, else -100; the last position is always ignored."""
    tokens = torch.tensor([10, 11, 12, 13, 14])
    mask = torch.tensor([False, False, True, True, False])
    assert sft_labels(tokens, mask).tolist() == [IGNORE_INDEX, 12, 13, IGNORE_INDEX, IGNORE_INDEX]


def test_sequence_logprobs_is_a_masked_sum():
    """Equals the sum of log_softmax picked by hand over the labelled positions."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    labels = torch.tensor([[1, IGNORE_INDEX, 3, 4, IGNORE_INDEX], [IGNORE_INDEX] * 4 + [6]])
    logp = torch.log_softmax(logits, -1)
    want = torch.stack([logp[0, 0, 1] + logp[0, 2, 3] + logp[0, 3, 4], logp[1, 4, 6]])
    torch.testing.assert_close(sequence_logprobs(logits, labels), want)


def test_document_mask_is_block_diagonal_causal():
    """Two documents and padding: no query sees another document; padding sees only itself."""
    mask = document_causal_mask(torch.tensor([[0, 0, 1, 1, 1, -1]]))[0, 0].int()
    assert mask.tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ]


def test_packed_rows_train_exactly_like_separate_dialogs():
    """Logits of each packed dialog equal its logits alone (no attention leak, RoPE offset-invariant), labels never
    cross a boundary, and the packed loss equals the loss of the padded one-per-row batch."""
    args = ModelArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=50, multiple_of=16, max_seq_len=64)
    model = Transformer(args).init_weights(std=0.1, seed=0).eval()
    g = torch.Generator().manual_seed(1)
    exs = []
    for n in (7, 5, 9, 4):
        toks = torch.randint(1, 50, (n,), generator=g).tolist()
        exs.append(Example(toks, [i >= n // 2 for i in range(n)]))
    packed = pack_examples(exs, seq_len=16)
    assert packed.tokens.shape == (2, 16)  # 7+5 | 9+4
    with torch.no_grad():
        logits = forward(model, packed.tokens, packed.doc_ids)
        for row in range(2):
            for d in range(2):
                where = (packed.doc_ids[row] == d).nonzero().flatten()
                alone = model(packed.tokens[row, where][None])[0]
                torch.testing.assert_close(logits[row, where], alone, atol=2e-5, rtol=1e-4)
        # the last token of a dialog never predicts the next dialog's first token
        for row in range(2):
            ends = (packed.doc_ids[row, 1:] != packed.doc_ids[row, :-1]).nonzero().flatten()
            assert (packed.labels[row, ends] == IGNORE_INDEX).all()
        padded = pad_examples(exs)
        torch.testing.assert_close(
            masked_cross_entropy(logits, packed.labels),
            masked_cross_entropy(model(padded.tokens), padded.labels),
            atol=1e-5,
            rtol=1e-5,
        )
    assert packed.n_targets == padded.n_targets == sum(sum(e.target[1:]) for e in exs)


def test_pack_rejects_a_dialog_longer_than_a_row():
    """A clear error, not a silent truncation."""
    with pytest.raises(ValueError, match="seq_len"):
        pack_examples([Example([1] * 20, [True] * 20)], seq_len=16)


def test_dialog_loader_fills_rows_and_resumes(chat_format):
    """Each batch has the requested rows; a loader restored from state_dict yields the same next batch."""
    from minillama.posttrain.sft import DialogLoader, task_examples

    exs = task_examples(chat_format, T.make_tasks(60, "train"))
    loader = DialogLoader(exs, seq_len=128, seed=3)
    b1 = loader.next_batch(4)
    assert b1["tokens"].shape == (4, 128)
    state = loader.state_dict()
    b2 = loader.next_batch(4)
    again = DialogLoader(exs, seq_len=128, seed=3)
    again.load_state_dict(state)
    assert torch.equal(again.next_batch(4)["tokens"], b2["tokens"])


def test_tasks_split_and_checker():
    """Train and held-out never share a list; the checker accepts the answer, rejects corruptions, scores partially."""
    import random

    train, held = T.make_tasks(400, "train"), T.make_tasks(100, "heldout")
    assert not set(train) & set(held)
    rng = random.Random(0)
    for t in held:
        assert T.check(t, t.answer) and T.check(t, f" {t.answer} ")
        bad = T.corrupt(t, rng, 1)
        assert not T.check(t, bad) and T.score(t, bad) < 1.0
    t = T.Task("max", (3, 1, 2))
    assert T.solve("last", (3, 1, 2)) == 2 and T.solve("min", (3, 1, 2)) == 1 and T.solve("count", (3, 1, 2)) == 3
    assert T.score(t, "3") == 1.0 and T.score(t, "5") == pytest.approx(0.8) and T.score(t, "9") > T.score(t, "12")
    assert T.score(t, "no idea") == 0.0 and T.score(t, "3 3") == 0.0
    with pytest.raises(ValueError, match="split"):
        T.make_tasks(3, "test")


def test_target_only_logprobs_and_sft_loss_match_full_logits():
    """Projecting only labelled positions gives the same per-token log-probs and loss as full logits."""
    from minillama.posttrain.data import sft_loss, target_logprobs, token_logprobs

    args = ModelArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=50, multiple_of=16, max_seq_len=64)
    model = Transformer(args).init_weights(std=0.1, seed=0)
    g = torch.Generator().manual_seed(2)
    exs = [Example(torch.randint(1, 50, (n,), generator=g).tolist(), [i > 2 for i in range(n)]) for n in (6, 8, 5)]
    b = pack_examples(exs, seq_len=12)
    full = token_logprobs(forward(model, b.tokens, b.doc_ids), b.labels)
    torch.testing.assert_close(target_logprobs(model, b.tokens, b.labels, b.doc_ids), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        sft_loss(model, b), masked_cross_entropy(forward(model, b.tokens, b.doc_ids), b.labels), atol=1e-5, rtol=1e-5
    )


def test_dialog_loader_always_fills_exactly_the_rows_asked_for():
    """Dialogs of mixed lengths once made the loader's row count and the packer's disagree; every batch must have
    `rows` rows, never split a dialog, and hand out each dialog exactly once per epoch."""
    import random

    from minillama.posttrain.sft import DialogLoader

    rng = random.Random(0)
    lengths = [rng.choice([3, 5, 9, 14, 15, 16]) for _ in range(200)]
    exs = [Example([i % 50 + 1] * n, [True] * n) for i, n in enumerate(lengths)]
    loader = DialogLoader(exs, seq_len=16, seed=0)
    seen = 0
    for _ in range(40):
        batch = loader.next_batch(4)
        assert batch["tokens"].shape == (4, 16)
        docs = batch["doc_ids"]
        seen += sum(int(row.max()) + 1 for row in docs)
        if loader.epoch:
            break
    assert loader.epoch == 1 or seen <= len(exs)
