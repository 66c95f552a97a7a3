"""The training loop (minillama.train): schedule, AdamW, accumulation, ramp, checkpoints and exact resume.

References: torch.optim.AdamW and torch.nn.utils.clip_grad_norm_ in a bare loop, torch's LR schedulers, and the
formulas of paper §3.4.1 written out here.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import minillama.train.trainer as trainer_module
from minillama.checkpoint import CheckpointError
from minillama.data.shards import ShardLoader, pack_documents
from minillama.model import Transformer
from minillama.model.config import ModelArgs
from minillama.train import (
    TrainConfig,
    Trainer,
    adamw_step,
    batch_rows_at,
    clip_grad_norm,
    evaluate,
    lm_loss,
    lr_schedule,
    steps_for_tokens,
    train,
)
from minillama.train.recipe import tokens_after_steps
from minillama.train.trainer import replan_at_warmup_end

SEQ = 16


def model(seed=0, vocab=64):
    return Transformer(ModelArgs.from_preset("tiny", vocab_size=vocab, max_seq_len=64)).init_weights(seed=seed)


def stream(n_docs=200, vocab=64, seed=0):
    rng = np.random.default_rng(seed)
    docs = [list((np.arange(rng.integers(10, 80)) * rng.integers(1, 5)) % (vocab - 2) + 2) for _ in range(n_docs)]
    return pack_documents(docs, 0, 1)


def loader(seed=1):
    return ShardLoader([stream()], SEQ, seed=seed)


def cfg(**kw):
    base = dict(
        max_steps=12, lr=3e-3, min_lr=3e-4, warmup_steps=3, batch_size=4, seq_len=SEQ, eval_every=4, ckpt_every=4
    )
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------------- schedule and ramp
def test_lr_schedule_warmup_then_cosine_matches_torch_schedulers():
    """Linear warmup then cosine to min_lr equals torch's LinearLR + CosineAnnealingLR chained by SequentialLR."""
    max_lr, min_lr, warm, total = 1e-3, 1e-5, 10, 100
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=max_lr)
    sched = torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warm, end_factor=1.0, total_iters=warm - 1),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm, eta_min=min_lr),
        ],
        milestones=[warm],
    )
    for step in range(total):
        assert lr_schedule(step, max_lr, min_lr, warm, total) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6)
        opt.step()
        sched.step()
    assert lr_schedule(total, max_lr, min_lr, warm, total) == pytest.approx(min_lr)
    assert lr_schedule(10 * total, max_lr, min_lr, warm, total) == pytest.approx(min_lr)


def test_lr_schedule_linear_anneals_to_zero():
    """The annealing schedule (§3.4.3) falls linearly from the peak to exactly 0 at max_steps."""
    lrs = [lr_schedule(s, 1.0, 0.5, 0, 10, "linear") for s in range(11)]
    assert lrs == pytest.approx([1 - s / 10 for s in range(11)])
    with pytest.raises(ValueError, match="schedule"):
        lr_schedule(5, 1.0, 0.1, 0, 10, "exponential")


def test_batch_ramp_rows_follow_tokens_seen():
    """Rows per step switch at the token thresholds, like the 405B run's 4M -> 8M -> 16M tokens per step."""
    ramp = ((0, 2), (100, 4), (300, 8))
    assert [batch_rows_at(t, ramp) for t in (0, 99, 100, 299, 300, 10**9)] == [2, 2, 4, 4, 8, 8]
    tr = Trainer(model(), loader(), cfg(batch_ramp=((0, 2), (SEQ * 4, 4)), micro_batch_size=2))
    rows = [tr.train_step()["rows"] for _ in range(4)]
    assert rows == [2, 2, 4, 4]  # 2 rows·16 tokens per step: the threshold of 64 tokens is reached after step 2
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        cfg(batch_ramp=((0, 2), (100, 3)), micro_batch_size=2)
    with pytest.raises(ValueError, match="start at 0"):
        cfg(batch_ramp=((5, 2),))


def test_progress_bar_counts_tokens_so_the_eta_holds_under_the_ramp():
    """Under a ramp a late step holds 4x the tokens of an early one: the bar's total is the run's tokens, counted
    step by step from the ramp, and it ends exactly there (a bar in steps would have been 1/3 done when a quarter
    of the work was). Post-training losses keep a bar in steps."""
    ramp = ((0, 1), (SEQ * 4, 2), (SEQ * 12, 4))
    tr = Trainer(model(), loader(), cfg(max_steps=10, batch_ramp=ramp, eval_every=0, ckpt_every=0))
    tokens, rows = 0, []
    for _ in range(10):
        rows.append(batch_rows_at(tokens, ramp))
        tokens += rows[-1] * SEQ
    assert rows == [1, 1, 1, 1, 2, 2, 2, 2, 4, 4]
    assert tokens_after_steps(10, ramp, SEQ) == tokens and steps_for_tokens(tokens, ramp, SEQ) == 10
    tr.fit(progress=True)
    assert (tr.bar.unit, tr.bar.total, tr.bar.n) == ("tok", tokens, tokens) and tr.tokens_seen == tokens
    post = Trainer(model(), loader(), cfg(max_steps=3, eval_every=0, ckpt_every=0), loss_fn=lambda m, b: lm_loss(m, b))
    post.fit(progress=True)
    assert (post.bar.unit, post.bar.total, post.bar.n) == ("step", 3, 3)


# ---------------------------------------------------------------------- AdamW and clipping
def test_adamw_step_matches_torch():
    """Five steps of the written-out AdamW equal torch.optim.AdamW (decoupled weight decay, bias correction)."""
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, 7, generator=g)
    grads = [torch.randn(5, 7, generator=g) for _ in range(5)]
    p = torch.nn.Parameter(w0.clone())
    opt = torch.optim.AdamW([p], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    w, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    for t, grad in enumerate(grads, start=1):
        p.grad = grad.clone()
        opt.step()
        w, m, v = adamw_step(w, grad, m, v, t, 1e-2, (0.9, 0.95), 1e-8, 0.1)
    torch.testing.assert_close(w, p.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m, opt.state[p]["exp_avg"])
    torch.testing.assert_close(v, opt.state[p]["exp_avg_sq"])


def test_clip_grad_norm_matches_torch():
    """Global-norm clipping equals torch.nn.utils.clip_grad_norm_, and leaves small gradients alone."""
    g = torch.Generator().manual_seed(1)
    ps = [torch.nn.Parameter(torch.zeros(s)) for s in ((3, 4), (5,), (2, 2, 2))]
    grads = [torch.randn(p.shape, generator=g) * 3 for p in ps]
    for p, gr in zip(ps, grads):
        p.grad = gr.clone()
    ref_norm = torch.nn.utils.clip_grad_norm_(ps, 1.0)
    clipped, norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(float(ref_norm), rel=1e-6)
    for c, p in zip(clipped, ps):
        torch.testing.assert_close(c, p.grad)
    same, _ = clip_grad_norm(grads, 1e6)
    for s, gr in zip(same, grads):
        torch.testing.assert_close(s, gr)


# ---------------------------------------------------------------------- the loop against a bare loop
def test_trainer_equals_bare_torch_loop():
    """Trainer steps (schedule, clipping, weight decay on matrices only) give the same weights as a plain loop
    written with torch.optim.AdamW, LambdaLR and clip_grad_norm_."""
    c = cfg(max_steps=6, weight_decay=0.1, grad_clip=0.5)
    tr = Trainer(model(), loader(), c)
    for _ in range(6):
        tr.train_step()

    ref = model()
    data = loader()
    decay = [p for p in ref.parameters() if p.ndim >= 2]
    other = [p for p in ref.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
        lr=c.lr,
        betas=c.betas,
        eps=c.eps,
    )
    warm, total = c.warmup_steps, c.max_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warm
            if s < warm
            else (c.min_lr + (c.lr - c.min_lr) * 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))) / c.lr
        ),
    )
    for _ in range(6):
        x, y = data.next_batch(4)
        loss = F.cross_entropy(ref(x).reshape(-1, 64), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        opt.step()
        opt.zero_grad()
        sched.step()
    for (name, a), b in zip(tr.model.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_gradient_accumulation_equals_full_batch():
    """4 micro-batches of 2 rows accumulate to the same update as one batch of 8 rows."""
    a = Trainer(model(), loader(), cfg(batch_size=8))
    b = Trainer(model(), loader(), cfg(batch_size=8, micro_batch_size=2))
    for _ in range(3):
        ra, rb = a.train_step(), b.train_step()
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)
        assert ra["tokens"] == rb["tokens"] == 8 * SEQ * ra["step"]
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6)


def test_training_lowers_loss_and_bf16_autocast_tracks_fp32():
    """A few dozen steps lower the validation loss; the same run under bf16 autocast stays close to fp32."""
    val = [ShardLoader([stream(seed=9)], SEQ, shuffle=False).next_batch(16)]
    m = model()
    before = evaluate(m, val)
    assert before == pytest.approx(math.log(64), abs=0.3)  # an untrained model is close to uniform
    fp32 = train(m, loader(), cfg(max_steps=40, lr=1e-2, min_lr=1e-3), val_batches=val, progress=False)
    bf16 = train(model(), loader(), cfg(max_steps=40, lr=1e-2, min_lr=1e-3, bf16=True), val_batches=val, progress=False)
    assert fp32.val_history[-1]["val_loss"] < before - 1.0
    assert bf16.val_history[-1]["val_loss"] == pytest.approx(fp32.val_history[-1]["val_loss"], abs=0.15)


def test_custom_loss_fn_and_dict_batches():
    """Post-training passes its own batches and loss: loss_fn(model, batch) with dict batches works."""

    class DictLoader:
        def __init__(self):
            self.inner = loader()

        def next_batch(self, rows):
            x, y = self.inner.next_batch(rows)
            return {"tokens": x, "targets": y, "mask": (torch.arange(SEQ) >= SEQ // 2).expand(rows, SEQ)}

        def state_dict(self):
            return self.inner.state_dict()

        def load_state_dict(self, s):
            self.inner.load_state_dict(s)

    seen = []

    def masked_loss(m, batch):
        seen.append(batch["tokens"].shape)
        targets = batch["targets"].masked_fill(~batch["mask"], -100)
        return lm_loss(m, (batch["tokens"], targets))

    tr = train(model(), DictLoader(), cfg(max_steps=3), loss_fn=masked_loss, progress=False)
    assert seen == [(4, SEQ)] * 3 and tr.tokens_seen == 3 * 4 * SEQ and math.isfinite(tr.history[-1]["loss"])


# ---------------------------------------------------------------------- checkpoints and resume
def test_resume_in_process_gives_identical_curve(tmp_path):
    """Stopping after 7 of 12 steps (last checkpoint at step 4) and resuming reproduces the uninterrupted loss
    curve, validation curve and final weights bit for bit."""
    val = [ShardLoader([stream(seed=9)], SEQ, shuffle=False).next_batch(4)]
    full = train(model(), loader(), cfg(), val_batches=val, out_dir=tmp_path / "full", progress=False)
    part = Trainer(model(), loader(), cfg(), val_batches=val, out_dir=tmp_path / "part")
    for _ in range(7):
        part.train_step()
        if part.step % 4 == 0:
            part.validate()
            part.save()
    resumed = train(None, loader(), cfg(), val_batches=val, out_dir=tmp_path / "part", resume=True, progress=False)
    assert resumed.history == full.history and resumed.val_history == full.val_history
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert (tmp_path / "part" / "loss.png").stat().st_size > 1000


def test_resume_errors_are_clear(tmp_path):
    """Resuming from nothing, a truncated model file, a truncated optimizer state or a corrupt trainer.json
    raises an error naming the problem; the files are left in place."""
    with pytest.raises(ValueError, match="nothing to resume"):
        train(None, loader(), cfg(), out_dir=tmp_path / "none", resume=True)
    train(model(), loader(), cfg(max_steps=4), out_dir=tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / "checkpoint"

    def truncate(name):
        data = (ckpt / name).read_bytes()
        (ckpt / name).write_bytes(data[: len(data) // 2])
        return data

    for name, pattern in (
        ("model.safetensors", "truncated or corrupt"),
        ("optimizer.st", "truncated or corrupt"),
        ("trainer.json", "corrupt"),
    ):
        original = truncate(name)
        with pytest.raises(CheckpointError, match=pattern):
            train(None, loader(), cfg(), out_dir=tmp_path / "run", resume=True)
        (ckpt / name).write_bytes(original)
    (ckpt / "trainer.json").unlink()
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        Trainer.resume(ckpt, loader())


def test_checkpoint_holds_optimizer_loader_and_rng(tmp_path):
    """The checkpoint folder has the model, AdamW moments by parameter name, loader position and RNG state."""
    from safetensors.torch import load_file

    tr = train(model(), loader(), cfg(max_steps=4), out_dir=tmp_path, progress=False)
    ckpt = tmp_path / "checkpoint"
    moments = load_file(ckpt / "optimizer.st")
    assert {"layers.0.attention.wq.weight.exp_avg", "norm.weight.exp_avg_sq", "tok_embeddings.weight.step"} <= set(
        moments
    )
    torch.testing.assert_close(moments["norm.weight.exp_avg"], tr.optimizer.state[tr.model.norm.weight]["exp_avg"])
    state = json.loads((ckpt / "trainer.json").read_text())
    assert state["step"] == 4 and state["loader"] == tr.loader.state_dict()
    assert TrainConfig.from_dict(state["train_config"]) == tr.cfg
    assert set(load_file(ckpt / "rng.st")) == {"torch"}


@pytest.mark.parametrize(
    "argv", [["--preset", "nope"], ["--preset", "llama3.1-405b"], ["--minutes", "0"], ["--steps", "0"]]
)
def test_pretrain_rejects_bad_flags_before_touching_disk(argv, tmp_path, capsys):
    """Unknown or herd-sized presets and empty schedules stop with a usage error (exit 2) that names the fix."""
    from minillama.cli.pretrain import main

    with pytest.raises(SystemExit) as e:
        main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert ("tiny, small, base" in err) if argv[0] == "--preset" else ("--minutes must be > 0" in err)
    assert not (tmp_path / "run").exists()


def test_pretrain_reads_documents_jsonl_from_data_build(tmp_path):
    """`--data data/documents.jsonl` (what `minillama data build` writes) gives one document per row, not the JSON
    text of the whole file as a single document."""
    from minillama.assets import shipped_tokenizer_path
    from minillama.data.corpus import Document, save_documents
    from minillama.data.prepare import prepare_data

    docs = [Document(f"def f{i}(x):\n    return x + {i}\n" * 20, "user", f"d{i}", "user", "code") for i in range(30)]
    save_documents(docs, tmp_path / "documents.jsonl")
    _, meta, tok = prepare_data(
        str(tmp_path / "documents.jsonl"), tmp_path / "run", str(shipped_tokenizer_path()), 8192, None, 0
    )
    splits = meta["splits"]
    assert splits["train"]["documents"] + splits["val"]["documents"] == len(docs)
    assert splits["train"]["bytes"] + splits["val"]["bytes"] == sum(len(d.text.encode()) for d in docs)


def test_replan_measures_speed_after_a_slow_start(monkeypatch):
    """`--minutes` runs re-plan at the end of warmup from the speed of the steps after the first few, so a slow start
    (torch.compile compiling for a minute) is paid once and not extrapolated. A fake clock: 10 s for each of the
    first 3 steps, then 1 s per step; a 100 s budget."""
    now = [0.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: now[0])

    def tick(trainer, record):
        now[0] += 10.0 if trainer.step <= 3 else 1.0

    clock = {"start": 0.0}
    c = cfg(max_steps=1000, warmup_steps=10, eval_every=0, ckpt_every=0)
    tr = Trainer(model(), loader(), c, callbacks=[tick, replan_at_warmup_end(100.0, clock)])
    for _ in range(10):
        tr.train_step()
        for fn in tr.callbacks:
            fn(tr, tr.history[-1])
    # at step 10: 37 s spent; 1 step/s since step 3 -> 63 more steps fit in the budget
    assert tr.cfg.max_steps == 10 + 63
