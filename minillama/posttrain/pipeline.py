"""Every post-training stage end to end, each one measured on held-out prompts (paper §4.1–4.2).

    pre-trained ─SFT─> sft ─reward model─> rm ─rejection sampling + SFT─> rs ─DPO ×3 (own data each)─> average

`python -m minillama posttrain --out runs/posttrain` writes `results.json`, `summary.md` (the table for the
README) and the plots, and prints one line per stage: held-out accuracy and wall time. `--smoke` (or
MINILLAMA_SMOKE=1) runs every stage with tiny sizes in about a minute, for CI and the notebooks.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from minillama.checkpoint import average_models, save_checkpoint
from minillama.posttrain import dpo as D
from minillama.posttrain import reward as R
from minillama.posttrain import tasks as T
from minillama.posttrain.common import load_chat_format, load_policy, save_figure, write_json
from minillama.posttrain.dpo import plot_implicit_rewards
from minillama.posttrain.rejection import best_of_k_curve, plot_best_of_k, rejection_sample
from minillama.posttrain.reward import plot_reward_margins
from minillama.posttrain.sampling import evaluate_accuracy, sample_responses
from minillama.posttrain.sft import default_config, run_sft, task_examples


@dataclass
class PipelineConfig:
    """Sizes and steps of every stage (defaults: the measured run; `smoke()` gives the CI sizes)."""

    init: str = "auto"  # checkpoint folder | "fresh" | "auto" (the shipped pre-trained model, else fresh)
    tokenizer: str | None = None
    n_eval: int = 800  # held-out prompts (200 per task kind)
    sft_train: int = 6000
    sft_steps: int = 200
    sft_lr: float = 3e-3
    batch_rows: int = 4  # packed rows of 256 tokens per SFT step (~30 dialogs)
    rm_prompts: int = 800
    rm_heldout_prompts: int = 200
    rm_samples: int = 4  # policy samples per prompt to rank (besides the edited answer and corruptions)
    rm_steps: int = 400
    rm_lr: float = 2e-3
    rs_prompts: int = 1500
    rs_k: int = 8
    rs_curve_prompts: int = 200
    rs_steps: int = 100
    rs_lr: float = 1e-3
    dpo_prompts: int = 3000
    dpo_k: int = 4
    dpo_steps: int = 240
    dpo_lr: float = 3e-5
    dpo_batch: int = 16
    dpo_seeds: tuple[int, ...] = (0, 1, 2)
    temperature: float = 0.7
    seed: int = 0

    @classmethod
    def small(cls, **kw) -> PipelineConfig:
        """Smoke sizes: every stage runs, numbers are not meaningful."""
        base = dict(
            n_eval=40,
            sft_train=400,
            sft_steps=12,
            batch_rows=4,
            rm_prompts=60,
            rm_heldout_prompts=20,
            rm_samples=2,
            rm_steps=8,
            rs_prompts=60,
            rs_k=4,
            rs_curve_prompts=20,
            rs_steps=6,
            dpo_prompts=60,
            dpo_k=2,
            dpo_steps=6,
            dpo_batch=8,
            dpo_seeds=(0, 1),
        )
        base.update(kw)
        return cls(**base)


@dataclass
class _Run:
    """What the stages share: the config, chat format and held-out prompts, the results so far, the output folder."""

    cfg: PipelineConfig
    cf: object  # ChatFormat
    heldout: list
    out: Path | None
    log: object  # print-like
    results: dict = field(default_factory=dict)

    def record(self, stage: str, model, wall: float, **extra) -> None:
        """Measure `model` on the held-out prompts, log it and save its checkpoint."""
        acc = evaluate_accuracy(model, self.cf, self.heldout)
        self.results["stages"][stage] = {
            "accuracy": acc["accuracy"],
            "per_kind": acc["per_kind"],
            "wall_s": wall,
            **extra,
        }
        kinds = ", ".join(f"{k} {v:.0%}" for k, v in acc["per_kind"].items())
        self.log(f"{stage:<22} held-out accuracy {acc['accuracy']:6.1%}  ({kinds})  {wall:7.1f} s")
        if self.out is not None and stage != "pretrained":
            save_checkpoint(model, self.out / "checkpoints" / stage)

    def figure(self, fig_fn, name: str) -> None:
        if self.out is not None:
            save_figure(fig_fn(), self.out / name)


def run(cfg: PipelineConfig, out: str | Path | None = None, log=print) -> dict:
    """Run every stage; returns the results dict (and writes it, the plots and checkpoints under `out`)."""
    cf = load_chat_format(cfg.tokenizer)
    r = _Run(
        cfg,
        cf,
        T.make_tasks(cfg.n_eval, "heldout", seed=0),
        Path(out) if out is not None else None,
        log,
        {"config": asdict(cfg), "stages": {}},
    )
    policy = pretrained_stage(r)
    sft, sft_tasks = sft_stage(r, policy)
    rm = reward_stage(r, sft)
    rs_model = rejection_sampling_stage(r, sft, rm, sft_tasks)
    dpo_runs, walls = dpo_stage(r, rs_model)
    averaging_stage(r, dpo_runs, walls)
    if r.out is not None:
        write_json(r.out / "results.json", r.results)
        (r.out / "summary.md").write_text(summary_table(r.results))
        save_figure(plot_stages(r.results), r.out / "stages.png")
    return r.results


def pretrained_stage(r: _Run):
    """0. The starting model (the shipped pre-trained one by default), measured as it is."""
    policy, origin = load_policy(r.cfg.init, r.cf.tokenizer.n_words, seed=r.cfg.seed)
    r.results["init"] = origin
    r.results["n_params"] = policy.num_params()
    r.log(f"start: {origin} ({policy.num_params():,} parameters); {r.cfg.n_eval} held-out prompts")
    r.record("pretrained", policy, 0.0)
    return policy


def sft_stage(r: _Run, policy):
    """1. SFT on the exact answers. Returns the SFT model and its training prompts."""
    cfg, t0 = r.cfg, time.perf_counter()
    sft_tasks = T.make_tasks(cfg.sft_train, "train", seed=cfg.seed)
    sft = copy.deepcopy(policy)
    trainer = run_sft(
        sft,
        task_examples(r.cf, sft_tasks),
        default_config(cfg.sft_steps, cfg.sft_lr, cfg.batch_rows, seed=cfg.seed),
        out_dir=r.out / "sft" if r.out else None,
    )
    r.results["sft_loss"] = [h["loss"] for h in trainer.history]
    r.record("sft", sft, time.perf_counter() - t0)
    return sft, sft_tasks


def reward_stage(r: _Run, sft):
    """2. Reward model: edited > chosen > rejected from the SFT policy's own samples and corruptions."""
    cfg, cf, t0 = r.cfg, r.cf, time.perf_counter()
    rm_tasks = T.make_tasks(cfg.rm_prompts, "train", seed=cfg.seed + 1)
    rm_held = T.make_tasks(cfg.rm_heldout_prompts, "heldout", seed=1)
    samples = sample_responses(
        sft, cf, rm_tasks + rm_held, cfg.rm_samples, temperature=cfg.temperature, seed=cfg.seed, desc="RM samples"
    )
    by_task = dict(zip(rm_tasks + rm_held, samples))
    train_pairs = R.ranking_pairs(R.make_rankings(rm_tasks, cfg.seed, by_task))
    held_pairs = R.ranking_pairs(R.make_rankings(rm_held, cfg.seed + 1, by_task))
    rm = R.RewardModel.from_policy(sft)
    better, worse = R.pair_rows(cf, train_pairs)
    rm_hist = R.train_reward_model(rm, better, worse, cfg.rm_steps, lr=cfg.rm_lr, seed=cfg.seed)
    acc, margins = R.evaluate_pairs(rm, *R.pair_rows(cf, held_pairs))
    rm_wall = time.perf_counter() - t0
    r.results["reward_model"] = {
        "pairwise_accuracy": acc,
        "train_pairs": len(train_pairs),
        "heldout_pairs": len(held_pairs),
        "wall_s": rm_wall,
        "history": rm_hist,
        "margins": margins.tolist(),
    }
    r.log(f"{'reward model':<22} held-out pairwise accuracy {acc:6.1%} on {len(held_pairs)} pairs  {rm_wall:7.1f} s")
    if r.out is not None:
        R.save_reward_model(rm, r.out / "checkpoints" / "reward_model")
    r.figure(lambda: plot_reward_margins(margins), "reward_margins.png")
    return rm


def rejection_sampling_stage(r: _Run, sft, rm, sft_tasks):
    """3. Rejection sampling: best of K by the RM, fine-tune on the picks (with a control of as many extra steps)."""
    cfg, cf, t0 = r.cfg, r.cf, time.perf_counter()
    curve_tasks = T.make_tasks(cfg.rs_curve_prompts, "heldout", seed=2)
    curve_rs = rejection_sample(sft, rm, cf, curve_tasks, cfg.rs_k, cfg.temperature, seed=cfg.seed + 7)
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= cfg.rs_k]
    curve = best_of_k_curve(curve_rs["rm_scores"], curve_rs["correct"], ks)
    rs_tasks = T.make_tasks(cfg.rs_prompts, "train", seed=cfg.seed + 3)
    rs = rejection_sample(sft, rm, cf, rs_tasks, cfg.rs_k, cfg.temperature, seed=cfg.seed + 11)
    picks_right = sum(T.check(t, x) for t, x in rs["best"]) / len(rs["best"])
    # Llama 3's SFT mix holds the rejection-sampled responses *and* its other SFT data: the picks plus as many of
    # the stage-1 dialogs (exact answers)
    picks = task_examples(cf, [t for t, _ in rs["best"]], [x for _, x in rs["best"]])
    rs_mix = picks + task_examples(cf, sft_tasks[: len(picks)])
    rs_cfg = default_config(cfg.rs_steps, cfg.rs_lr, cfg.batch_rows, seed=cfg.seed + 3, warmup=5)
    rs_model = copy.deepcopy(sft)
    run_sft(rs_model, rs_mix, rs_cfg)
    rs_wall = time.perf_counter() - t0
    # control: the same extra steps on the stage-1 data alone, to separate the samples' effect from more training
    control = copy.deepcopy(sft)
    run_sft(control, task_examples(cf, sft_tasks[: 2 * len(picks)]), rs_cfg)
    control_acc = evaluate_accuracy(control, cf, r.heldout)["accuracy"]
    r.record(
        "rejection_sampling",
        rs_model,
        rs_wall,
        best_of_k=curve,
        rm_picks_correct=picks_right,
        sample_accuracy=float(rs["correct"].float().mean()),
        control_same_steps_exact_answers_only=control_acc,
    )
    r.log(f"{'':<22} control: same extra steps on exact answers only -> {control_acc:6.1%}")
    r.log(
        f"{'':<22} best-of-K (RM pick) {dict(zip(curve['k'], [round(a, 3) for a in curve['rm_best_of_k']]))}, "
        f"pass@K {dict(zip(curve['k'], [round(a, 3) for a in curve['pass_at_k']]))}; "
        f"RM picks right {picks_right:.1%}"
    )
    r.figure(lambda: plot_best_of_k(curve), "best_of_k.png")
    return rs_model


def dpo_stage(r: _Run, rs_model):
    """4. DPO from the rejection-sampling model: on-policy pairs, one run per seed, each on its own prompts ("runs
    with different versions of data", which model averaging then combines, paper §4.1.5)."""
    cfg, cf = r.cfg, r.cf
    dpo_runs, dpo_hist, walls, n_pairs = [], {}, [], []
    ref = copy.deepcopy(rs_model)
    for s in cfg.dpo_seeds:
        t1 = time.perf_counter()
        dpo_tasks = T.make_tasks(cfg.dpo_prompts, "train", seed=cfg.seed + 4 + 100 * s)
        dpo_samples = sample_responses(
            rs_model,
            cf,
            dpo_tasks,
            cfg.dpo_k,
            temperature=cfg.temperature,
            seed=cfg.seed + 13 + 100 * s,
            desc=f"DPO samples {s}",
        )
        pairs = D.make_pairs(dpo_tasks, dpo_samples, seed=s)
        data = D.prepare(ref, cf, pairs)
        m = copy.deepcopy(rs_model)
        dpo_hist[s] = D.train_dpo(m, data, cfg.dpo_steps, cfg.dpo_batch, cfg.dpo_lr, seed=s, desc=f"DPO seed {s}")
        dpo_runs.append(m)
        walls.append(time.perf_counter() - t1)
        n_pairs.append(len(pairs))
    r.results["dpo_pairs"] = n_pairs
    r.results["dpo_history"] = dpo_hist
    r.record("dpo", dpo_runs[0], walls[0], pairs=n_pairs[0])
    for s, m in zip(cfg.dpo_seeds[1:], dpo_runs[1:]):
        acc_s = evaluate_accuracy(m, cf, r.heldout)["accuracy"]
        r.results["stages"]["dpo"].setdefault("other_seeds", {})[s] = acc_s
        r.log(f"{'':<22} DPO seed {s}: held-out accuracy {acc_s:6.1%}")
    r.figure(lambda: plot_implicit_rewards(dpo_hist[cfg.dpo_seeds[0]]), "dpo_rewards.png")
    return dpo_runs, walls


def averaging_stage(r: _Run, dpo_runs, walls) -> None:
    """5. Model averaging of the DPO runs (paper §4.1.5)."""
    t0 = time.perf_counter()
    avg = average_models(dpo_runs)
    r.record("averaged", avg, time.perf_counter() - t0 + sum(walls[1:]), runs=len(dpo_runs))


def summary_table(results: dict) -> str:
    """A markdown table: stage, held-out accuracy, wall time."""
    rows = ["| stage | held-out accuracy | wall time |", "|---|---|---|"]
    for stage, r in results["stages"].items():
        rows.append(f"| {stage} | {r['accuracy']:.1%} | {r['wall_s']:.0f} s |")
    rm = results.get("reward_model")
    if rm:
        rows.append(
            f"| reward model | pairwise accuracy {rm['pairwise_accuracy']:.1%} ({rm['heldout_pairs']} held-out "
            f"pairs) | {rm['wall_s']:.0f} s |"
        )
    return "\n".join(rows) + "\n"


def plot_stages(results: dict, ax=None):
    """Held-out accuracy after each stage (bars); returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    names = list(results["stages"])
    accs = [results["stages"][n]["accuracy"] for n in names]
    ax.bar(range(len(names)), accs, color="tab:blue")
    for i, a in enumerate(accs):
        ax.text(i, a + 0.01, f"{a:.0%}", ha="center")
    ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names])
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("Post-training, stage by stage")
    return ax.figure
