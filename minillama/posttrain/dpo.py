"""Direct preference optimisation with Llama 3's changes (paper §4.1.4).

For a prompt x with a chosen response y_c and a rejected one y_r, DPO raises log π(y_c) − log π(y_r) relative to a
frozen reference model π_ref (the policy at the start of the stage):

    h = (log π(y_c) − log π(y_r)) − (log π_ref(y_c) − log π_ref(y_r)),     L_DPO = −log σ(β·h),  β = 0.1

Llama 3's changes, all here:

* **Formatting tokens are masked out** of the chosen and rejected log-probabilities: headers and the terminating
  `<|eot_id|>`/`<|eom_id|>`. Both responses share these tokens; learning to push one up and the other down at the same
  token is contradictory, and the paper found it made the model stop early or repeat tail tokens.
* **An NLL term** with coefficient 0.2 on the chosen responses (Pang et al. 2024) keeps their likelihood from
  falling while the margin grows.
* Log-probabilities are **sums** over response tokens (`data.sequence_logprobs`); the reference's are computed once.

The preference pairs are on-policy: for each training prompt the latest policy's samples are judged by the checker;
chosen is a correct sample (or the exact answer, "edited", when none is right) and rejected the wrong answer
the policy gives most often: DPO moves probability exactly where the policy errs.

`minillama dpo --policy CKPT --out DIR` (`minillama.cli.posttrain`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from minillama.model import Transformer
from minillama.posttrain import tasks as T
from minillama.posttrain.data import IGNORE_INDEX, Example, dialog_formatting_ids, pad_examples, render, target_logprobs
from minillama.posttrain.losses import DPO_BETA, NLL_COEF, dpo_loss, implicit_rewards, nll_term
from minillama.utils import progress

__all__ = ["dpo_loss", "Pair", "make_pairs", "PreferenceData", "train_dpo"]


@dataclass(frozen=True)
class Pair:
    """One preference: `chosen` beats `rejected` as an answer to `task`."""

    task: T.Task
    chosen: str
    rejected: str


def make_pairs(tasks: list[T.Task], samples: list[list[str]], seed: int = 0) -> list[Pair]:
    """On-policy pairs: chosen = a correct sample (else the exact answer, "edited"), rejected = the policy's most
    frequent wrong sample (ties: the closest to right), i.e. the mistake it is most likely to make. Prompts whose
    samples are all right give no pair (nothing to prefer)."""
    rng = random.Random(seed)
    pairs = []
    for task, outs in zip(tasks, samples):
        right = [o for o in outs if T.check(task, o)]
        wrong = [o for o in outs if not T.check(task, o)]
        if not wrong:
            continue
        chosen = rng.choice(right) if right else task.answer
        rejected = max(sorted(set(wrong)), key=lambda o: (wrong.count(o), T.score(task, o)))
        pairs.append(Pair(task, chosen, rejected))
    return pairs


def render_response(chat_format, task: T.Task, response: str) -> Example:
    """The dialog with targets on the response tokens only, formatting tokens (headers, eot/eom) masked out."""
    return render(
        chat_format,
        task.messages(response, system=False),
        exclude_ids=dialog_formatting_ids(chat_format),
        allow_empty=True,
    )


@dataclass
class PreferenceData:
    """Rendered pairs with the frozen reference's summed log-probs (computed once)."""

    chosen: list[Example]
    rejected: list[Example]
    ref_chosen: Tensor  # (n,)
    ref_rejected: Tensor  # (n,)

    def __len__(self) -> int:
        return len(self.chosen)


def policy_logps(model: Transformer, examples: list[Example]) -> tuple[Tensor, Tensor, Tensor]:
    """Summed response log-probs (n,), per-token log-probs (n, s) and the response mask (n, s) of `examples`."""
    batch = pad_examples(examples)
    tok = target_logprobs(model, batch.tokens, batch.labels)
    mask = batch.labels != IGNORE_INDEX
    return tok.sum(-1), tok, mask


@torch.no_grad()
def prepare(ref: Transformer, chat_format, pairs: list[Pair], batch_size: int = 64) -> PreferenceData:
    """Render the pairs and compute the reference log-probs with `ref` (in eval mode, no gradients)."""
    ref.eval()
    chosen = [render_response(chat_format, p.task, p.chosen) for p in pairs]
    rejected = [render_response(chat_format, p.task, p.rejected) for p in pairs]
    rc, rr = [], []
    for i in range(0, len(pairs), batch_size):
        rc.append(policy_logps(ref, chosen[i : i + batch_size])[0])
        rr.append(policy_logps(ref, rejected[i : i + batch_size])[0])
    return PreferenceData(chosen, rejected, torch.cat(rc), torch.cat(rr))


def dpo_batch(
    policy: Transformer, data: PreferenceData, idx: list[int], beta: float = DPO_BETA, nll_coef: float = NLL_COEF
) -> tuple[Tensor, dict]:
    """The Llama 3 DPO loss on pairs `idx` and its metrics (implicit rewards of chosen and rejected, accuracy)."""
    pc, tok_c, mask_c = policy_logps(policy, [data.chosen[i] for i in idx])
    pr, _, _ = policy_logps(policy, [data.rejected[i] for i in idx])
    rc, rr = data.ref_chosen[idx], data.ref_rejected[idx]
    pref = dpo_loss(pc, pr, rc, rr, beta)
    nll = nll_term(tok_c, mask_c)
    loss = pref.mean() + nll_coef * nll
    rew_c, rew_r = implicit_rewards(pc, rc, beta), implicit_rewards(pr, rr, beta)
    return loss, {
        "loss": loss.item(),
        "dpo": pref.mean().item(),
        "nll": nll.item(),
        "reward_chosen": float(rew_c.mean()),
        "reward_rejected": float(rew_r.mean()),
        "reward_accuracy": float((rew_c > rew_r).float().mean()),
    }


def train_dpo(
    policy: Transformer,
    data: PreferenceData,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-4,
    beta: float = DPO_BETA,
    nll_coef: float = NLL_COEF,
    seed: int = 0,
    warmup: int = 10,
    log_every: int = 5,
    desc: str = "dpo",
) -> list[dict]:
    """AdamW on the DPO objective, linear warmup then constant LR; returns the metric history (every `log_every`)."""
    if len(data) == 0:
        raise ValueError("no preference pairs: the policy got every sampled prompt right, or no prompts were given")
    rng = random.Random(seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    policy.train()
    history = []
    order: list[int] = []
    bar = progress(range(1, steps + 1), desc=desc)
    for step in bar:
        if len(order) < batch_size:
            more = list(range(len(data)))
            rng.shuffle(more)
            order += more
        idx, order = order[:batch_size], order[batch_size:]
        loss, metrics = dpo_batch(policy, data, idx, beta, nll_coef)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, step / max(1, warmup))
        opt.step()
        if step % log_every == 0 or step == steps:
            history.append({"step": step, **metrics})
    policy.eval()
    return history


def plot_implicit_rewards(history: list[dict], ax=None):
    """DPO's implicit rewards β·log(π/π_ref) of chosen and rejected responses over training; returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["reward_chosen"] for h in history], label="chosen")
    ax.plot(steps, [h["reward_rejected"] for h in history], label="rejected")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("DPO step")
    ax.set_ylabel(r"implicit reward $\beta\,\log \pi/\pi_{ref}$")
    ax.set_title("DPO: chosen up, rejected down")
    ax.legend()
    return ax.figure
