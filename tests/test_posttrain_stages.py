"""Post-training stages on a tiny model: reward model, best-of-K, DPO pairs and training, averaging, SFT reuse."""

import random

import pytest
import torch

from minillama import ModelArgs, Transformer
from minillama.posttrain import tasks as T

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def chat_format():
    from minillama.posttrain.common import load_chat_format

    return load_chat_format()


def tiny(vocab, seed=0):
    args = ModelArgs(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=vocab, multiple_of=16, max_seq_len=128)
    return Transformer(args).init_weights(seed=seed)


def test_rankings_are_strict_and_give_all_pairs():
    """edited (right) > chosen > rejected by the checker's partial credit, three pairs each."""
    from minillama.posttrain.reward import make_rankings, ranking_pairs

    tasks = T.make_tasks(30, "train")
    ranked = make_rankings(tasks, seed=0)
    for r in ranked:
        scores = [T.score(r.task, x) for x in r.responses]
        assert T.check(r.task, r.responses[0]) and scores == sorted(scores, reverse=True)
        assert len(set(scores)) == len(scores)
    assert len(ranking_pairs(ranked)) == sum(len(r.responses) * (len(r.responses) - 1) // 2 for r in ranked)


def test_reward_model_reads_the_last_real_token(chat_format):
    """Padding after a row does not change its reward; the head starts at zero; the policy is not modified."""
    from minillama.posttrain.reward import RewardModel, batch_rows

    policy = tiny(chat_format.tokenizer.n_words)
    rm = RewardModel.from_policy(policy)
    torch.nn.init.normal_(rm.value_head.weight)
    rows = [[1, 5, 7, 9], [1, 5, 7, 9, 11, 13]]
    tokens, lengths = batch_rows(rows)
    with torch.no_grad():
        both = rm(tokens, lengths)
        alone = rm(torch.tensor([rows[0]]), torch.tensor([4]))
    torch.testing.assert_close(both[0], alone[0], atol=1e-5, rtol=1e-5)
    assert rm.body is not policy and rm.body.tok_embeddings.weight.data_ptr() != policy.tok_embeddings.weight.data_ptr()


def test_reward_model_learns_the_ranking(chat_format):
    """A few Bradley–Terry steps on exact vs corrupted answers push training pairwise accuracy above chance."""
    from minillama.posttrain.reward import (
        RewardModel,
        evaluate_pairs,
        make_rankings,
        pair_rows,
        ranking_pairs,
        train_reward_model,
    )

    rm = RewardModel.from_policy(tiny(chat_format.tokenizer.n_words))
    pairs = ranking_pairs(make_rankings(T.make_tasks(40, "train"), seed=0))
    better, worse = pair_rows(chat_format, pairs)
    hist = train_reward_model(rm, better, worse, steps=30, batch_size=16, lr=3e-3)
    acc, margins = evaluate_pairs(rm, better, worse)
    assert hist[-1]["loss"] < hist[0]["loss"] + 1e-6 and acc > 0.6 and margins.shape == (len(pairs),)


def test_best_of_k_curve_by_hand():
    """The RM's pick among the first k and pass@k, on a 2-prompt example worked by hand."""
    from minillama.posttrain.rejection import best_of_k, best_of_k_curve

    scores = torch.tensor([[0.1, 0.9, 0.5, 0.0], [0.3, 0.2, 0.8, 0.9]])
    correct = torch.tensor([[False, True, False, False], [False, False, True, False]])
    assert best_of_k(scores, 2).tolist() == [1, 0]
    curve = best_of_k_curve(scores, correct, [1, 2, 4])
    assert curve["rm_best_of_k"] == [0.0, 0.5, 0.5] and curve["pass_at_k"] == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError):
        best_of_k(scores, 5)


def test_dpo_pairs_prefer_right_over_wrong():
    """Chosen is a right sample (or the exact answer when none is); rejected is the most frequent wrong sample, ties
    going to the closest; all-right prompts give no pair."""
    from minillama.posttrain.dpo import make_pairs

    t = T.Task("max", (1, 7, 3))
    u = T.Task("min", (4, 2, 9))
    v = T.Task("count", (1, 1, 1))
    w = T.Task("last", (5, 5, 4))
    pairs = make_pairs([t, u, v, w], [["7", "6", "1"], ["5", "3", "9"], ["3", "3", "3"], ["1", "1", "5", "4"]])
    assert [(p.chosen, p.rejected) for p in pairs] == [("7", "6"), ("2", "3"), ("4", "1")]


def test_dpo_training_separates_chosen_from_rejected(chat_format):
    """A few DPO steps on a tiny model: implicit reward of chosen rises above rejected; the reference is untouched;
    at step 0 the policy equals the reference, so the DPO loss is log 2."""
    import copy
    import math

    from minillama.posttrain.dpo import Pair, dpo_batch, prepare, train_dpo

    policy = tiny(chat_format.tokenizer.n_words, seed=3)
    ref = copy.deepcopy(policy)
    rng = random.Random(0)
    pairs = [Pair(t, t.answer, T.corrupt(t, rng, 3)) for t in T.make_tasks(24, "train")]
    data = prepare(ref, chat_format, pairs)
    _, m0 = dpo_batch(policy, data, list(range(8)))
    assert m0["dpo"] == pytest.approx(math.log(2), abs=1e-5)
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    hist = train_dpo(policy, data, steps=25, batch_size=8, lr=3e-3, log_every=5)
    assert hist[-1]["reward_chosen"] > hist[-1]["reward_rejected"]
    assert all(torch.equal(before[k], v) for k, v in ref.state_dict().items())


def test_averaging_is_the_elementwise_mean_and_checks_shapes():
    """Two models average to (θ1 + θ2)/2 tensor by tensor; weights are normalised; mismatched shapes are refused."""
    from minillama.checkpoint import average_models, average_state_dicts

    a, b = tiny(100, seed=1), tiny(100, seed=2)
    avg = average_models([a, b])
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), avg.parameters()):
        torch.testing.assert_close(pc, (pa + pb) / 2, msg=name)
    sd = average_state_dicts([a.state_dict(), b.state_dict()], weights=[3, 1])
    torch.testing.assert_close(sd["norm.weight"], 0.75 * a.norm.weight + 0.25 * b.norm.weight)
    with pytest.raises(ValueError, match="match"):
        average_state_dicts([a.state_dict(), tiny(50).state_dict()])


def test_sft_reuses_the_trainer_and_lowers_the_loss(chat_format):
    """run_sft drives minillama.train.Trainer (not a copy) with the packed loader and the masked loss."""
    import minillama.train
    from minillama.posttrain.sft import default_config, run_sft, task_examples

    model = tiny(chat_format.tokenizer.n_words)
    trainer = run_sft(
        model,
        task_examples(chat_format, T.make_tasks(200, "train")),
        default_config(20, lr=3e-3, batch_size=2, seq_len=128),
        progress=False,
    )
    assert isinstance(trainer, minillama.train.Trainer)
    losses = [h["loss"] for h in trainer.history]
    assert len(losses) == 20 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_reward_model_save_and_load_round_trip(chat_format, tmp_path):
    """save_reward_model then load_reward_model gives the same rewards."""
    from minillama.posttrain.reward import RewardModel, batch_rows, load_reward_model, save_reward_model

    rm = RewardModel.from_policy(tiny(chat_format.tokenizer.n_words))
    torch.nn.init.normal_(rm.value_head.weight)
    save_reward_model(rm, tmp_path / "rm")
    again = load_reward_model(tmp_path / "rm")
    tokens, lengths = batch_rows([[1, 2, 3], [4, 5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(again(tokens, lengths), rm.eval()(tokens, lengths))


def test_pipeline_runs_every_stage_and_writes_its_report(tmp_path):
    """The measured pipeline end to end at toy sizes: every stage reports an accuracy and a wall time, and the
    summary table, results and plots are written."""
    import json

    from minillama.posttrain.pipeline import PipelineConfig, run

    cfg = PipelineConfig.small(
        n_eval=8,
        sft_train=60,
        sft_steps=2,
        batch_rows=2,
        rm_prompts=8,
        rm_heldout_prompts=4,
        rm_samples=1,
        rm_steps=2,
        rs_prompts=6,
        rs_k=2,
        rs_curve_prompts=4,
        rs_steps=2,
        dpo_prompts=8,
        dpo_k=2,
        dpo_steps=2,
        dpo_batch=4,
    )
    results = run(cfg, tmp_path, log=lambda *a: None)
    assert list(results["stages"]) == ["pretrained", "sft", "rejection_sampling", "dpo", "averaged"]
    assert all(0 <= r["accuracy"] <= 1 and r["wall_s"] >= 0 for r in results["stages"].values())
    assert 0 <= results["reward_model"]["pairwise_accuracy"] <= 1
    for name in ("results.json", "summary.md", "stages.png", "best_of_k.png", "dpo_rewards.png", "reward_margins.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["stages"]["sft"]["accuracy"] == results["stages"]["sft"]["accuracy"]
    assert "| sft |" in (tmp_path / "summary.md").read_text()
