"""The post-training commands (paper §4): `minillama sft`, `reward`, `rejection-sample`, `dpo`, and `posttrain`
(every stage end to end, `minillama.posttrain.pipeline`)."""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from minillama.checkpoint import save_checkpoint
from minillama.posttrain import tasks as T
from minillama.posttrain.common import load_chat_format, load_policy, save_figure, write_json
from minillama.posttrain.dpo import make_pairs, plot_implicit_rewards, prepare, train_dpo
from minillama.posttrain.losses import DPO_BETA, NLL_COEF
from minillama.posttrain.pipeline import PipelineConfig, run, summary_table
from minillama.posttrain.rejection import best_of_k_curve, plot_best_of_k, rejection_sample
from minillama.posttrain.reward import (
    RewardModel,
    evaluate_pairs,
    load_reward_model,
    make_rankings,
    pair_rows,
    plot_reward_margins,
    ranking_pairs,
    save_reward_model,
    train_reward_model,
)
from minillama.posttrain.sampling import evaluate_accuracy, sample_responses
from minillama.posttrain.sft import default_config, load_dialogs, run_sft, task_examples
from minillama.utils import set_threads, smoke


def _sft_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillama sft", description=__doc__.split("\n\n")[0])
    p.add_argument("--init", default="auto", help="checkpoint folder, 'fresh', or 'auto' (shipped, else fresh)")
    p.add_argument("--tokenizer", default=None, help="rank file (default: the shipped course tokenizer)")
    p.add_argument("--out", required=True, help="output folder (checkpoint/, loss.png, results.json)")
    p.add_argument("--data", default=None, help="JSON lines of {'messages': [...]} (default: the task family)")
    p.add_argument("--n-train", type=int, default=20000, help="task-family dialogs to train on")
    p.add_argument("--n-eval", type=int, default=200, help="held-out prompts for the accuracy")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=16, help="packed rows per step")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    return p


def sft_main(argv: list[str] | None = None) -> int:
    args = _sft_parser().parse_args(argv)
    set_threads()
    cf = load_chat_format(args.tokenizer)
    model, origin = load_policy(args.init, cf.tokenizer.n_words, seed=args.seed)
    print(f"start: {origin} ({model.num_params():,} parameters)")
    examples = (
        load_dialogs(args.data, cf)
        if args.data
        else task_examples(cf, T.make_tasks(args.n_train, "train", seed=args.seed))
    )
    heldout = T.make_tasks(args.n_eval, "heldout", seed=0)
    before = evaluate_accuracy(model, cf, heldout)
    print(f"held-out accuracy before SFT: {before['accuracy']:.1%}")
    t0 = time.perf_counter()
    trainer = run_sft(
        model, examples, default_config(args.steps, args.lr, args.batch_size, args.seq_len, args.seed), out_dir=args.out
    )
    wall = time.perf_counter() - t0
    after = evaluate_accuracy(model, cf, heldout)
    print(f"held-out accuracy after SFT: {after['accuracy']:.1%} ({wall:.0f} s); checkpoint in {args.out}/checkpoint")
    write_json(
        Path(args.out) / "results.json",
        {"before": before, "after": after, "wall_s": wall, "final_loss": trainer.history[-1]["loss"]},
    )
    return 0


def reward_main(argv: list[str] | None = None) -> int:
    """`minillama reward --policy CKPT --out DIR`: train a reward model on the policy's body, report pairwise
    accuracy on held-out pairs, save it (body checkpoint + value_head.st) and a margin histogram."""
    p = argparse.ArgumentParser(prog="minillama reward", description=reward_main.__doc__.split(":")[1].strip())
    p.add_argument("--policy", default="auto", help="checkpoint to start from (the SFT model); 'auto' = shipped")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--prompts", type=int, default=800, help="training prompts (3 pairs each)")
    p.add_argument("--heldout-prompts", type=int, default=200)
    p.add_argument("--samples", type=int, default=4, help="policy samples per prompt to rank")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    set_threads()
    cf = load_chat_format(args.tokenizer)
    policy, origin = load_policy(args.policy, cf.tokenizer.n_words)
    t0 = time.perf_counter()
    train_tasks = T.make_tasks(args.prompts, "train", seed=args.seed + 1)
    held_tasks = T.make_tasks(args.heldout_prompts, "heldout", seed=1)
    samples = sample_responses(policy, cf, train_tasks + held_tasks, args.samples, temperature=0.7, seed=args.seed)
    by_task = dict(zip(train_tasks + held_tasks, samples))
    train_pairs = ranking_pairs(make_rankings(train_tasks, args.seed, by_task))
    held_pairs = ranking_pairs(make_rankings(held_tasks, args.seed + 1, by_task))
    rm = RewardModel.from_policy(policy)
    history = train_reward_model(rm, *pair_rows(cf, train_pairs), args.steps, lr=args.lr, seed=args.seed)
    acc, margins = evaluate_pairs(rm, *pair_rows(cf, held_pairs))
    wall = time.perf_counter() - t0
    out = Path(args.out)
    save_reward_model(rm, out / "reward_model")
    save_figure(plot_reward_margins(margins), out / "reward_margins.png")
    write_json(
        out / "results.json",
        {
            "policy": origin,
            "pairwise_accuracy": acc,
            "heldout_pairs": len(held_pairs),
            "train_pairs": len(train_pairs),
            "wall_s": wall,
            "history": history,
        },
    )
    print(
        f"reward model from {origin}: held-out pairwise accuracy {acc:.1%} on {len(held_pairs)} pairs "
        f"({wall:.0f} s); saved to {out / 'reward_model'}"
    )
    return 0


def rejection_main(argv: list[str] | None = None) -> int:
    """`minillama rejection-sample --policy CKPT --reward RM --out DIR`: K samples per prompt, the reward model's
    best kept as new SFT data (best.jsonl), the best-of-K curve on held-out prompts, and with --sft-steps a
    fine-tuned policy."""
    p = argparse.ArgumentParser(
        prog="minillama rejection-sample", description=rejection_main.__doc__.split(":")[1].strip()
    )
    p.add_argument("--policy", default="auto", help="checkpoint to sample from (the latest policy)")
    p.add_argument("--reward", required=True, help="reward model folder (from `minillama reward`)")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--prompts", type=int, default=1500)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--curve-prompts", type=int, default=200)
    p.add_argument("--sft-steps", type=int, default=0, help="fine-tune the policy on the picks for this many steps")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    set_threads()
    cf = load_chat_format(args.tokenizer)
    policy, origin = load_policy(args.policy, cf.tokenizer.n_words)
    rm = load_reward_model(args.reward)
    out = Path(args.out)
    t0 = time.perf_counter()
    curve_tasks = T.make_tasks(args.curve_prompts, "heldout", seed=2)
    cur = rejection_sample(policy, rm, cf, curve_tasks, args.k, args.temperature, seed=args.seed + 7)
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= args.k]
    curve = best_of_k_curve(cur["rm_scores"], cur["correct"], ks)
    tasks = T.make_tasks(args.prompts, "train", seed=args.seed + 3)
    rs = rejection_sample(policy, rm, cf, tasks, args.k, args.temperature, seed=args.seed + 11)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "best.jsonl", "w") as f:
        for task, response in rs["best"]:
            f.write(json.dumps({"messages": task.messages(response, system=False)}) + "\n")
    picks_right = sum(T.check(t, r) for t, r in rs["best"]) / len(rs["best"])
    save_figure(plot_best_of_k(curve), out / "best_of_k.png")
    result = {
        "policy": origin,
        "best_of_k": curve,
        "rm_picks_correct": picks_right,
        "sample_accuracy": float(rs["correct"].float().mean()),
        "sampling_wall_s": time.perf_counter() - t0,
    }
    print(
        f"{len(tasks)} prompts x {args.k} samples: samples right {result['sample_accuracy']:.1%}, RM picks right "
        f"{picks_right:.1%}; best-of-K {curve}"
    )
    if args.sft_steps:
        run_sft(
            policy,
            task_examples(cf, [t for t, _ in rs["best"]], [r for _, r in rs["best"]]),
            default_config(args.sft_steps, 1e-3, 4, seed=args.seed, warmup=5),
            out_dir=out / "sft",
        )
        held = evaluate_accuracy(policy, cf, T.make_tasks(400, "heldout", seed=0))
        result["heldout_accuracy_after_sft"] = held["accuracy"]
        print(f"after SFT on the picks: held-out accuracy {held['accuracy']:.1%} (checkpoint in {out / 'sft'})")
    write_json(out / "results.json", result)
    return 0


def dpo_main(argv: list[str] | None = None) -> int:
    """`minillama dpo --policy CKPT --out DIR`: on-policy preference pairs from the policy's samples, DPO with
    β 0.1, formatting tokens masked and an NLL term 0.2, against the frozen starting policy."""
    p = argparse.ArgumentParser(prog="minillama dpo", description=dpo_main.__doc__.split(":")[1].strip())
    p.add_argument("--policy", default="auto", help="checkpoint to start from; also the frozen reference")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--prompts", type=int, default=3000)
    p.add_argument("--k", type=int, default=4, help="samples per prompt to build pairs from")
    p.add_argument("--steps", type=int, default=240)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--beta", type=float, default=DPO_BETA)
    p.add_argument("--nll-coef", type=float, default=NLL_COEF)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    set_threads()
    cf = load_chat_format(args.tokenizer)
    policy, origin = load_policy(args.policy, cf.tokenizer.n_words)
    heldout = T.make_tasks(400, "heldout", seed=0)
    before = evaluate_accuracy(policy, cf, heldout)["accuracy"]
    t0 = time.perf_counter()
    tasks = T.make_tasks(args.prompts, "train", seed=args.seed + 4)
    samples = sample_responses(policy, cf, tasks, args.k, temperature=0.7, seed=args.seed + 13, desc="DPO samples")
    pairs = make_pairs(tasks, samples, seed=args.seed)
    data = prepare(copy.deepcopy(policy), cf, pairs)
    history = train_dpo(policy, data, args.steps, args.batch_size, args.lr, args.beta, args.nll_coef, seed=args.seed)
    wall = time.perf_counter() - t0
    after = evaluate_accuracy(policy, cf, heldout)["accuracy"]
    out = Path(args.out)
    save_checkpoint(policy, out / "checkpoint")
    save_figure(plot_implicit_rewards(history), out / "dpo_rewards.png")
    write_json(
        out / "results.json",
        {"policy": origin, "pairs": len(pairs), "before": before, "after": after, "wall_s": wall, "history": history},
    )
    print(
        f"DPO on {len(pairs)} pairs: held-out accuracy {before:.1%} -> {after:.1%} ({wall:.0f} s); "
        f"checkpoint in {out / 'checkpoint'}"
    )
    return 0


def pipeline_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minillama posttrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--init", default="auto")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--smoke", action="store_true", help="tiny sizes (also when MINILLAMA_SMOKE=1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    set_threads()
    make = PipelineConfig.small if (args.smoke or smoke(False, True)) else PipelineConfig
    cfg = make(init=args.init, tokenizer=args.tokenizer, seed=args.seed)
    t0 = time.perf_counter()
    results = run(cfg, args.out)
    print(f"total {time.perf_counter() - t0:.0f} s; results in {args.out}/results.json and summary.md")
    print(summary_table(results))
    return 0
