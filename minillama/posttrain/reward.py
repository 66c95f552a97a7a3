"""The reward model: the policy's body with a scalar head, trained on ranked responses (paper §4.1.2).

Llama 3 trains its reward model on the pre-trained checkpoint with Llama 2's Bradley–Terry objective, **without the
margin term**: `L = −log σ(r(x, y_better) − r(x, y_worse))`. Some prompts have three ranked responses,
edited > chosen > rejected; each ranking becomes all its pairs (three pairs for three responses).

Here the ranking comes from the task checker's partial credit (`tasks.score`): the edited response is the exact
answer, chosen and rejected are imperfect answers (policy samples or corrupted answers), chosen scoring strictly
higher. The reward is read from the final hidden state at the response's last token (its `<|eot_id|>`).

`minillama reward --policy CKPT --out DIR` trains one and reports the
pairwise accuracy on held-out pairs.
"""

from __future__ import annotations

import copy
import itertools
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load, save
from torch import Tensor, nn

from minillama.checkpoint import load_checkpoint, save_checkpoint
from minillama.model import Transformer
from minillama.posttrain import tasks as T
from minillama.posttrain.data import hidden_states
from minillama.posttrain.losses import bradley_terry_loss
from minillama.utils import progress


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
    def from_policy(cls, policy: Transformer) -> RewardModel:
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
        tokens[i, : len(t)] = torch.tensor(t)
    return tokens, lengths


@torch.no_grad()
def score_responses(
    rm: RewardModel, chat_format, tasks: list[T.Task], responses: list[str], batch_size: int = 64
) -> Tensor:
    """Reward of each (task, response) dialog -> (n,)."""
    rm.eval()
    rows = [chat_format.encode_dialog_with_roles(t.messages(r, system=False))[0] for t, r in zip(tasks, responses)]
    out = []
    for i in range(0, len(rows), batch_size):
        tokens, lengths = batch_rows(rows[i : i + batch_size])
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
    for "significantly better" (paper §4.2.1).
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
        tb, lb = batch_rows(better[i : i + batch_size])
        tw, lw = batch_rows(worse[i : i + batch_size])
        margins.append(rm(tb, lb) - rm(tw, lw))
    m = torch.cat(margins)
    return float((m > 0).float().mean()), m


def train_reward_model(
    rm: RewardModel,
    better: list[list[int]],
    worse: list[list[int]],
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-4,
    seed: int = 0,
    log_every: int = 10,
    progress_desc: str = "reward model",
) -> list[dict]:
    """AdamW on the Bradley–Terry loss over random minibatches of pairs; returns a history of dicts."""
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

    head = {k: v.detach().contiguous() for k, v in rm.value_head.state_dict().items()}
    save_checkpoint(rm.body, folder, extra_files={HEAD_FILE: save(head)})


def load_reward_model(folder: str | Path) -> RewardModel:
    folder = Path(folder)
    if not (folder / HEAD_FILE).is_file() and (folder / "reward_model" / HEAD_FILE).is_file():
        folder = folder / "reward_model"  # the run folder `minillama reward --out DIR` writes
    head = folder / HEAD_FILE
    if not head.is_file():
        raise FileNotFoundError(
            f"{folder} has no {HEAD_FILE}: pass a folder written by save_reward_model "
            "(`minillama reward --out DIR` writes DIR/reward_model)"
        )
    rm = RewardModel(load_checkpoint(folder))
    rm.value_head.load_state_dict(load(head.read_bytes()))
    return rm.eval()


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def plot_reward_margins(margins, ax=None):
    """Histogram of r(better) − r(worse) on held-out pairs; right of zero is ranked right. Returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    m = torch.as_tensor(margins).float()
    ax.hist(m.numpy(), bins=30, color="tab:green")
    ax.axvline(0, color="k", lw=1)
    ax.set_xlabel("reward margin r(better) − r(worse)")
    ax.set_ylabel("held-out pairs")
    ax.set_title(f"Reward model: {float((m > 0).float().mean()):.0%} of pairs ranked right")
    return ax.figure
