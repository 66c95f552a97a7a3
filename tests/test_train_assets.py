"""The pre-trained checkpoints shipped in minillama/assets (tiny-stdlib, and small-stdlib: the default recipe's
15-minute run, stored in bf16): small, loadable, better than the unigram baseline on held-out standard-library code,
and their greedy output equals the stored golden continuation."""

import json

import pytest
import torch
from safetensors import safe_open

from minillama.assets import DEFAULT_MODEL, SHIPPED, shipped_checkpoint
from minillama.checkpoint import load_checkpoint
from minillama.data.corpus import stdlib_corpus, train_val_split
from minillama.data.shards import ShardLoader, pack_documents
from minillama.generate import generate
from minillama.model import ModelArgs
from minillama.train import evaluate
from minillama.train.recipes import load_shipped

#: name -> the most bytes its safetensors may take (small-stdlib: 6.3M parameters in bf16)
SIZES = {SHIPPED: 8_000_000, DEFAULT_MODEL: 13_000_000}


@pytest.fixture(scope="module", params=list(SIZES))
def name(request):
    return request.param


@pytest.fixture(scope="module")
def shipped(name):
    return load_shipped(name)


def test_shipped_files_are_small_and_documented(name):
    """A few MB of safetensors, the tokenizer, the golden file and the exact command that reproduces them."""
    folder = shipped_checkpoint(name)
    assert (folder / "model.safetensors").stat().st_size < SIZES[name]
    assert {"config.json", "model.safetensors", "tokenizer.model", "golden.json", "REPRODUCE.txt"} <= {
        p.name for p in folder.iterdir()
    }
    assert "minillama pretrain" in (folder / "REPRODUCE.txt").read_text()


def test_shipped_tokenizer_matches_the_model(shipped):
    """The course tokenizer: 7,936 ranks + Llama 3's 256 specials = the model's 8,192-row embedding."""
    model, tok = shipped
    assert tok.n_words == model.args.vocab_size == 8192
    assert len(tok.ranks) == 7936 and tok.bos_id == 7936


def test_small_stdlib_is_the_default_recipe_stored_in_bf16():
    """The default model is the `small` preset as `minillama pretrain` trains it, stored in bfloat16, and its
    golden file records the run's whole-split held-out score."""
    folder = shipped_checkpoint(DEFAULT_MODEL)
    with safe_open(folder / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    assert load_checkpoint(folder).args == ModelArgs.from_preset("small", vocab_size=8192)
    golden = json.loads((folder / "golden.json").read_text())
    assert golden["stored_dtype"] == "bfloat16" and golden["heldout"]["bits_per_byte"] <= 1.45


def test_shipped_greedy_output_matches_golden(shipped, name):
    """Greedy decoding (KV cache) of each stored prompt reproduces the stored continuation token for token.

    Another CPU's float rounding may only flip a genuine near-tie: every golden token must be the arg-max of a
    teacher-forced forward pass (within 1e-4), and greedy output may leave the golden path only at a near-tie."""
    model, tok = shipped
    golden = json.loads((shipped_checkpoint(name) / "golden.json").read_text())
    for case in golden["continuations"]:
        ids = tok.encode(case["prompt"], bos=True)
        assert ids == case["prompt_ids"]
        assert tok.decode(case["new_tokens"]) == case["text"]
        with torch.no_grad():
            logits = model(torch.tensor([ids + case["new_tokens"]]))[0, len(ids) - 1 : -1]  # (new, vocab)
        gaps = logits.max(-1).values - logits.gather(-1, torch.tensor(case["new_tokens"])[:, None])[:, 0]
        assert float(gaps.max()) <= 1e-4, f"prompt {case['prompt']!r}: a golden token is not the arg-max"
        new = generate(model, [ids], case["max_new_tokens"], temperature=0.0)[0]
        diff = next((i for i, (a, b) in enumerate(zip(new, case["new_tokens"])) if a != b), None)
        if diff is None:
            assert new == case["new_tokens"]
        else:
            top2 = logits[diff].topk(2).values
            assert float(top2[0] - top2[1]) < 1e-3, (
                f"prompt {case['prompt']!r}: greedy output {tok.decode(new)!r} left the golden continuation "
                f"{case['text']!r} at token {diff}, which is not a near-tie"
            )


def test_shipped_model_beats_unigram_on_held_out_code(shipped):
    """On validation documents of the standard library (never trained on), the loss is well below the unigram
    entropy of the corpus (6.9 nats/token, COURSE_TOOLING_NOTES), i.e. the model uses context."""
    model, tok = shipped
    _, val = train_val_split(stdlib_corpus("all"), 0.05, seed=0)
    code = [d for d in val if d.kind == "code"][:3]
    stream = pack_documents([tok.encode(d.text) for d in code], tok.bos_id, tok.eos_id)
    batches = [ShardLoader([stream], 128, shuffle=False).next_batch(4)]
    with torch.no_grad():
        loss = evaluate(model, batches)
    assert loss < 6.9 - 1.0, f"held-out loss {loss:.2f} nats/token"
