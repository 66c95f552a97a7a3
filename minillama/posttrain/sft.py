"""Supervised fine-tuning (paper §4.1.3): cross-entropy on the assistant's tokens, prompts masked, dialogs packed.

The training loop is the pre-training one (`minillama.train.train`), reused unchanged: SFT only brings its own
batches (`DialogLoader`: packed dialogs with assistant-only labels and a document mask) and its own loss
(`minillama.posttrain.data.sft_loss`). Llama 3 fine-tunes its largest models at LR 1e-5 for 8.5K–9K steps; a 3M
parameter model on a CPU learns this task family at a few 1e-3 in a few hundred steps.

`minillama sft --init CKPT|fresh|auto --out runs/sft --steps 600` trains on the task family's train split (or on
`--data dialogs.jsonl`, one `{"messages": [...]}` per line) and reports held-out accuracy before and after.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from minillama.model import Transformer
from minillama.posttrain import tasks as T
from minillama.posttrain.data import Example, pack_examples, render, sft_loss
from minillama.train import TrainConfig, train


class DialogLoader:
    """Rendered dialogs, shuffled each epoch, packed into rows of `seq_len` for `minillama.train.Trainer`.

    `next_batch(rows)` -> `{"tokens", "labels", "doc_ids"}` of `rows` rows; `state_dict()` / `load_state_dict()`
    make a resumed run continue with the same dialogs.
    """

    def __init__(self, examples: list[Example], seq_len: int, seed: int = 0, pad_id: int = 0):
        if not examples:
            raise ValueError("no dialogs to train on")
        too_long = max(len(e.tokens) for e in examples)
        if too_long > seq_len:
            raise ValueError(f"a dialog has {too_long} tokens, more than seq_len={seq_len}; raise --seq-len")
        self.examples, self.seq_len, self.seed, self.pad_id = examples, seq_len, seed, pad_id
        self.epoch, self.pos = 0, 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 100_003 + self.epoch).shuffle(order)
        return order

    def _next_example(self) -> Example:
        if self.pos >= len(self._order):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._epoch_order()
        e = self.examples[self._order[self.pos]]
        self.pos += 1
        return e

    def next_batch(self, rows: int) -> dict:
        """Fill `rows` rows with whole dialogs, first fit (each dialog goes into the first row with room), exactly
        as `pack_examples` lays them out; the first dialog that fits nowhere opens the next batch."""
        picked, used = [], []
        while True:
            e = self._next_example()
            n = len(e.tokens)
            slot = next((r for r, u in enumerate(used) if u + n <= self.seq_len), None)
            if slot is None:
                if len(used) == rows:
                    self.pos -= 1  # pos >= 1 here: _next_example has just advanced it
                    break
                used.append(n)
            else:
                used[slot] += n
            picked.append(e)
        return pack_examples(picked, self.seq_len, self.pad_id).as_dict()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.pos = state["seed"], state["epoch"], state["pos"]
        self._order = self._epoch_order()


def task_examples(chat_format, tasks: list[T.Task], responses: list[str] | None = None) -> list[Example]:
    """SFT examples from tasks, with the exact answers or the given responses (e.g. rejection-sampled ones)."""
    responses = responses if responses is not None else [t.answer for t in tasks]
    return [render(chat_format, t.messages(r, system=False)) for t, r in zip(tasks, responses)]


def default_config(
    steps: int,
    lr: float = 3e-3,
    batch_size: int = 16,
    seq_len: int = 256,
    seed: int = 0,
    warmup: int | None = None,
    **kwargs,
):
    """The TrainConfig SFT uses: cosine from `lr` to lr/10, short warmup, light weight decay."""
    return TrainConfig(
        max_steps=steps,
        lr=lr,
        min_lr=lr / 10,
        warmup_steps=warmup if warmup is not None else max(1, min(50, steps // 10)),
        weight_decay=0.01,
        batch_size=batch_size,
        seq_len=seq_len,
        seed=seed,
        eval_every=0,
        **kwargs,
    )


def run_sft(
    model: Transformer,
    examples: list[Example],
    cfg,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
    val_examples: list[Example] | None = None,
):
    """Fine-tune `model` in place on `examples` with the pre-training Trainer; returns the Trainer."""
    loader = DialogLoader(examples, cfg.seq_len, seed=cfg.seed)
    val = None
    if val_examples:
        val = [pack_examples(val_examples[i : i + 64], cfg.seq_len).as_dict() for i in range(0, len(val_examples), 64)]
    trainer = train(model, loader, cfg, loss_fn=sft_loss, val_batches=val, out_dir=out_dir, progress=progress)
    model.eval()
    return trainer


def load_dialogs(path: str | Path, chat_format) -> list[Example]:
    """A JSON-lines file of `{"messages": [...]}` dialogs -> SFT examples."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(render(chat_format, json.loads(line)["messages"]))
        except (KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}:{i}: expected a JSON object with 'messages' ({err})") from None
    return out
