"""The reward model: the policy's body with a scalar head, trained on ranked responses [P §4.1.2].

Llama 3 trains its reward model on the pre-trained checkpoint with Llama 2's Bradley–Terry objective, **without the
margin term**: `L = −log σ(r(x, y_better) − r(x, y_worse))`. Some prompts have three ranked responses,
edited > chosen > rejected; each ranking becomes all its pairs (three pairs for three responses).

Here the ranking comes from the task checker's partial credit (`tasks.score`): the edited response is the exact
answer, chosen and rejected are imperfect answers (policy samples or corrupted answers), chosen scoring strictly
higher. The reward is read from the final hidden state at the response's last token (its `<|eot_id|>`).

`python -m minillama.posttrain.reward --init CKPT --out DIR` (or `minillama reward ...`) trains one and reports the
pairwise accuracy on held-out pairs.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from minillama.model import Transformer
from minillama.posttrain import tasks as T
from minillama.posttrain.data import hidden_states
from minillama.posttrain.losses import bradley_terry_loss


# ----------------------------------------------------------------------------------------------------------------
# Ranked responses -> pairs
# ----------------------------------------------------------------------------------------------------------------
def ranked_to_pairs(ranked: list) -> list[tuple]:
    """Responses ordered best first -> every (better, worse) pair: [e, c, r] -> [(e, c), (e, r), (c, r)]."""
    return [(ranked[i], ranked[j]) for i, j in itertools.combinations(range(len(ranked)), 2)]


def pairwise_accuracy(better_rewards: Tensor, worse_rewards: Tensor) -> float:
    """Fraction of pairs the reward model ranks right (strictly higher reward for the better response)."""
    return float((better_rewards > worse_rewards).float().mean())


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------
class RewardModel(nn.Module):
    """`body` (a Transformer, copied from the policy) + `value_head` (d -> 1) on the last token's hidden state."""

    def __init__(self, body: Transformer):
        super().__init__()
        self.body = body
        self.value_head = nn.Linear(body.args.dim, 1, bias=True)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    @classmethod
    def from_policy(cls, policy: Transformer) -> "RewardModel":
        """A reward model whose body is a copy of the policy (the policy is left untouched)."""
        return cls(copy.deepcopy(policy))

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """tokens (b, s) right-padded, lengths (b,) real lengths -> rewards (b,) read at position lengths − 1."""
        h = hidden_states(self.body, tokens)  # (b, s, d); causal, so padding after a row never reaches it
        last = h[torch.arange(tokens.shape[0]), lengths - 1]
        return self.value_head(last).squeeze(-1)


def batch_rows(token_lists: list[list[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad token lists -> tokens (b, s), lengths (b,)."""
    lengths = torch.tensor([len(t) for t in token_lists])
    tokens = torch.full((len(token_lists), int(lengths.max())), pad_id, dtype=torch.long)
    for i, t in enumerate(token_lists):
        tokens[i, :len(t)] = torch.tensor(t)
    return tokens, lengths


@torch.no_grad()
def score_responses(rm: RewardModel, chat_format, tasks: list[T.Task], responses: list[str],
                    batch_size: int = 64) -> Tensor:
    """Reward of each (task, response) dialog -> (n,)."""
    rm.eval()
    rows = [chat_format.encode_dialog_with_roles(t.messages(r, system=False))[0] for t, r in zip(tasks, responses)]
    out = []
    for i in range(0, len(rows), batch_size):
        tokens, lengths = batch_rows(rows[i:i + batch_size])
        out.append(rm(tokens, lengths))
    return torch.cat(out) if out else torch.zeros(0)


# ----------------------------------------------------------------------------------------------------------------
# Preference data
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Ranked:
    """One prompt with its responses best first (2 or 3 of them: edited > chosen > rejected)."""

    task: T.Task
    responses: list[str]


def make_rankings(tasks: list[T.Task], seed: int = 0, samples: dict[T.Task, list[str]] | None = None) -> list[Ranked]:
    """edited (the exact answer) > chosen > rejected for each task, ranked by the checker's partial credit.

    Chosen and rejected come from `samples` (e.g. the SFT policy's own wrong answers) when given, topped up with
    corrupted answers (1 edit for chosen, 2–3 for rejected); a pair is kept only when its scores differ, the stand-in
    for "significantly better" [P §4.2.1].
    """
    rng = random.Random(seed)
    out = []
    for task in tasks:
        pool = [r for r in (samples or {}).get(task, []) if not T.check(task, r)]
        pool += [T.corrupt(task, rng, 1), T.corrupt(task, rng, rng.randint(2, 3))]
        rng.shuffle(pool)
        by_score: dict[float, str] = {}
        for r in pool:
            by_score.setdefault(T.score(task, r), r)
        wrong = [by_score[s] for s in sorted(by_score, reverse=True)]
        if len(wrong) >= 2:
            picks = sorted(rng.sample(range(len(wrong)), 2))
            wrong = [wrong[picks[0]], wrong[picks[1]]]
        out.append(Ranked(task, [task.answer, *wrong]))
    return out


def ranking_pairs(rankings: list[Ranked]) -> list[tuple[T.Task, str, str]]:
    """All (task, better, worse) pairs of the rankings."""
    return [(r.task, b, w) for r in rankings for b, w in ranked_to_pairs(r.responses)]


def pair_rows(chat_format, pairs: list[tuple[T.Task, str, str]]) -> tuple[list[list[int]], list[list[int]]]:
    """Token rows of the better and worse dialog of each pair."""
    enc = lambda t, r: chat_format.encode_dialog_with_roles(t.messages(r, system=False))[0]
    return [enc(t, b) for t, b, _ in pairs], [enc(t, w) for t, _, w in pairs]


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_pairs(rm: RewardModel, better: list[list[int]], worse: list[list[int]], batch_size: int = 64):
    """(pairwise accuracy, reward margins (n,)) on token rows of pairs."""
    rm.eval()
    margins = []
    for i in range(0, len(better), batch_size):
        tb, lb = batch_rows(better[i:i + batch_size])
        tw, lw = batch_rows(worse[i:i + batch_size])
        margins.append(rm(tb, lb) - rm(tw, lw))
    m = torch.cat(margins)
    return float((m > 0).float().mean()), m


def train_reward_model(rm: RewardModel, better: list[list[int]], worse: list[list[int]], steps: int,
                       batch_size: int = 32, lr: float = 3e-4, seed: int = 0, log_every: int = 10,
                       progress_desc: str = "reward model") -> list[dict]:
    """AdamW on the Bradley–Terry loss over random minibatches of pairs; returns a history of dicts."""
    from minillama.utils import progress

    if len(better) != len(worse) or not better:
        raise ValueError("need the same, non-zero number of better and worse rows")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(rm.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    history = []
    rm.train()
    for step in progress(range(1, steps + 1), desc=progress_desc):
        idx = torch.randint(len(better), (batch_size,), generator=gen).tolist()
        tb, lb = batch_rows([better[i] for i in idx])
        tw, lw = batch_rows([worse[i] for i in idx])
        rb, rw = rm(tb, lb), rm(tw, lw)
        loss = bradley_terry_loss(rb, rw).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
        opt.param_groups[0]["lr"] = lr * min(1.0, step / max(1, steps // 10))
        opt.step()
        if step % log_every == 0 or step == steps:
            history.append({"step": step, "loss": loss.item(), "accuracy": float((rb > rw).float().mean().item())})
    rm.eval()
    return history


HEAD_FILE = "value_head.st"


def save_reward_model(rm: RewardModel, folder: str | Path) -> None:
    """Body as a minillama checkpoint plus `value_head.st` (safetensors bytes; not `*.safetensors`, which
    `load_checkpoint` would read as part of the body)."""
    from safetensors.torch import save

    from minillama.checkpoint import save_checkpoint

    head = {k: v.detach().contiguous() for k, v in rm.value_head.state_dict().items()}
    save_checkpoint(rm.body, folder, extra_files={HEAD_FILE: save(head)})


def load_reward_model(folder: str | Path) -> RewardModel:
    from safetensors.torch import load

    from minillama.checkpoint import load_checkpoint

    folder = Path(folder)
    if not (folder / HEAD_FILE).is_file() and (folder / "reward_model" / HEAD_FILE).is_file():
        folder = folder / "reward_model"  # the run folder `minillama reward --out DIR` writes
    head = folder / HEAD_FILE
    if not head.is_file():
        raise FileNotFoundError(f"{folder} has no {HEAD_FILE}: pass a folder written by save_reward_model "
                                "(`minillama reward --out DIR` writes DIR/reward_model)")
    rm = RewardModel(load_checkpoint(folder))
    rm.value_head.load_state_dict(load(head.read_bytes()))
    return rm.eval()


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`minillama reward --policy CKPT --out DIR`: train a reward model on the policy's body, report pairwise
    accuracy on held-out pairs, save it (body checkpoint + value_head.st) and a margin histogram."""
    from minillama.posttrain.common import load_chat_format, load_policy, save_figure, write_json
    from minillama.posttrain.pipeline import plot_reward_margins
    from minillama.posttrain.rejection import sample_responses
    from minillama.utils import set_threads

    p = argparse.ArgumentParser(prog="minillama reward", description=main.__doc__.split(":")[1].strip())
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
    write_json(out / "results.json", {"policy": origin, "pairwise_accuracy": acc, "heldout_pairs": len(held_pairs),
                                      "train_pairs": len(train_pairs), "wall_s": wall, "history": history})
    print(f"reward model from {origin}: held-out pairwise accuracy {acc:.1%} on {len(held_pairs)} pairs "
          f"({wall:.0f} s); saved to {out / 'reward_model'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
