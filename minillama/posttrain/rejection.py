"""Rejection sampling: K samples per prompt, the reward model keeps the best as new SFT data [P §4.2.2].

Llama 3 samples K (typically 10–30) outputs per prompt from its latest policy, lets the reward model pick the best,
and fine-tunes on those picks in the next round. Here every prompt is repeated K times in one batch of the KV-cache
generator (`minillama.generate.generate`), each sample is scored by the reward model and, separately, by the task
checker, and we measure:

* best-of-K accuracy: how often the reward model's pick among the first K samples is right, for K = 1, 2, 4, ...;
* pass@K (oracle): how often *any* of the first K samples is right (what a perfect reward model would reach).

`python -m minillama.posttrain.rejection --policy CKPT --reward RM --out DIR` (or `minillama rejection-sample ...`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from minillama.generate import generate
from minillama.model import Transformer
from minillama.posttrain import tasks as T


def best_of_k(scores: Tensor, k: int) -> Tensor:
    """Index of the highest-scoring sample among the first k of each prompt. scores (n, K) -> (n,) (first on ties)."""
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"k must be in 1..{scores.shape[-1]}, got {k}")
    return scores[:, :k].argmax(dim=-1)


def best_of_k_curve(rm_scores: Tensor, correct: Tensor, ks: list[int]) -> dict[str, list[float]]:
    """Accuracy of the RM's pick and the oracle pass@k for each k. rm_scores, correct (n, K) -> lists over ks."""
    picked, oracle = [], []
    for k in ks:
        idx = best_of_k(rm_scores, k)
        picked.append(float(correct.float().gather(1, idx[:, None]).mean()))
        oracle.append(float(correct[:, :k].any(dim=1).float().mean()))
    return {"k": list(ks), "rm_best_of_k": picked, "pass_at_k": oracle}


@torch.no_grad()
def sample_responses(model: Transformer, chat_format, tasks: list[T.Task], k: int, temperature: float = 1.0,
                     top_p: float = 1.0, max_new_tokens: int = 24, seed: int = 0, batch_size: int = 64,
                     desc: str = "sampling") -> list[list[str]]:
    """K responses per task (a list of K strings each), decoded until eot/eom or `max_new_tokens`."""
    from minillama.utils import progress

    model.eval()
    prompts = [chat_format.encode_dialog_prompt(t.messages(system=False)) for t in tasks]
    flat = [p for p in prompts for _ in range(k)]
    stops = (chat_format.eot_id, chat_format.eom_id)
    texts: list[str] = []
    for i in progress(range(0, len(flat), batch_size), desc=desc):
        outs = generate(model, flat[i:i + batch_size], max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, stop_tokens=stops, seed=seed + i)
        texts += [chat_format.tokenizer.decode(o) for o in outs]
    model.reset_cache()
    return [texts[j * k:(j + 1) * k] for j in range(len(tasks))]


def greedy_responses(model: Transformer, chat_format, tasks: list[T.Task], max_new_tokens: int = 24,
                     batch_size: int = 64) -> list[str]:
    """One greedy response per task."""
    return [r[0] for r in sample_responses(model, chat_format, tasks, 1, temperature=0.0,
                                           max_new_tokens=max_new_tokens, batch_size=batch_size, desc="greedy")]


def evaluate_accuracy(model: Transformer, chat_format, tasks: list[T.Task], **kwargs) -> dict:
    """Held-out exact-match accuracy of greedy answers, overall and per task kind."""
    responses = greedy_responses(model, chat_format, tasks, **kwargs)
    per_kind = {}
    for kind in T.KINDS:
        pairs = [(t, r) for t, r in zip(tasks, responses) if t.kind == kind]
        if pairs:
            per_kind[kind] = sum(T.check(t, r) for t, r in pairs) / len(pairs)
    return {"accuracy": T.accuracy(tasks, responses), "per_kind": per_kind, "examples": responses[:4]}


def rejection_sample(policy: Transformer, rm, chat_format, tasks: list[T.Task], k: int, temperature: float = 1.0,
                     seed: int = 0, batch_size: int = 64) -> dict:
    """Sample K per task, score with the RM and the checker; the RM's best of each task is the new SFT data.

    Returns `{"samples", "rm_scores" (n, K), "correct" (n, K), "best" (list of (task, response))}`.
    """
    from minillama.posttrain.reward import score_responses

    samples = sample_responses(policy, chat_format, tasks, k, temperature=temperature, seed=seed,
                               batch_size=batch_size, desc="rejection sampling")
    flat_tasks = [t for t in tasks for _ in range(k)]
    flat = [r for rs in samples for r in rs]
    rm_scores = score_responses(rm, chat_format, flat_tasks, flat).view(len(tasks), k)
    correct = torch.tensor([[T.check(t, r) for r in rs] for t, rs in zip(tasks, samples)])
    idx = best_of_k(rm_scores, k)
    best = [(t, rs[i]) for t, rs, i in zip(tasks, samples, idx.tolist())]
    return {"samples": samples, "rm_scores": rm_scores, "correct": correct, "best": best}


def plot_best_of_k(curve: dict, ax=None):
    """Best-of-K accuracy (RM pick) and pass@K (oracle) against K; returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(curve["k"], curve["rm_best_of_k"], "o-", label="reward model's pick")
    ax.plot(curve["k"], curve["pass_at_k"], "s--", label="any sample right (pass@K)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K samples per prompt")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Best-of-K")
    ax.legend()
    return ax.figure


def main(argv: list[str] | None = None) -> int:
    """`minillama rejection-sample --policy CKPT --reward RM --out DIR`: K samples per prompt, the reward model's
    best kept as new SFT data (best.jsonl), the best-of-K curve on held-out prompts, and with --sft-steps a
    fine-tuned policy."""
    from minillama.posttrain.common import load_chat_format, load_policy, save_figure, write_json
    from minillama.posttrain.reward import load_reward_model
    from minillama.utils import set_threads

    p = argparse.ArgumentParser(prog="minillama rejection-sample", description=main.__doc__.split(":")[1].strip())
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
    result = {"policy": origin, "best_of_k": curve, "rm_picks_correct": picks_right,
              "sample_accuracy": float(rs["correct"].float().mean()), "sampling_wall_s": time.perf_counter() - t0}
    print(f"{len(tasks)} prompts x {args.k} samples: samples right {result['sample_accuracy']:.1%}, RM picks right "
          f"{picks_right:.1%}; best-of-K {curve}")
    if args.sft_steps:
        from minillama.posttrain.sft import default_config, run_sft, task_examples

        run_sft(policy, task_examples(cf, [t for t, _ in rs["best"]], [r for _, r in rs["best"]]),
                default_config(args.sft_steps, 1e-3, 4, seed=args.seed, warmup=5), out_dir=out / "sft")
        held = evaluate_accuracy(policy, cf, T.make_tasks(400, "heldout", seed=0))
        result["heldout_accuracy_after_sft"] = held["accuracy"]
        print(f"after SFT on the picks: held-out accuracy {held['accuracy']:.1%} (checkpoint in {out / 'sft'})")
    write_json(out / "results.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
