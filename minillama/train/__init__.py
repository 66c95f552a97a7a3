"""Training (paper §3.4), the loop that post-training reuses unchanged (paper §4):

- `recipe`: the schedule (warmup + cosine/linear), the batch-size ramp, AdamW and clipping written out, the loss,
  and `TrainConfig`;
- `trainer`: `Trainer` (one run, one step at a time, resumable) and `train(...)`;
- `state`: the checkpoint files of a run beyond the model (optimizer, RNG, trainer.json);
- `plots`: the loss curve and the schedules;
- `recipes`: code-expert branches on new data mixes, annealing, the shipped tiny model.

The command line is `minillama pretrain` (`minillama.cli.pretrain`).
"""

from minillama.train.plots import plot_loss, plot_schedules
from minillama.train.recipe import (
    TrainConfig,
    adamw_step,
    batch_rows_at,
    clip_grad_norm,
    default_ramp,
    evaluate,
    lm_loss,
    lr_schedule,
    steps_for_tokens,
)
from minillama.train.state import read_trainer_state
from minillama.train.trainer import (
    Trainer,
    fixed_batches,
    measure_tokens_per_s,
    replan_at_warmup_end,
    sample_text,
    train,
)

__all__ = [
    "TrainConfig",
    "lr_schedule",
    "batch_rows_at",
    "steps_for_tokens",
    "default_ramp",
    "adamw_step",
    "clip_grad_norm",
    "lm_loss",
    "evaluate",
    "Trainer",
    "train",
    "fixed_batches",
    "measure_tokens_per_s",
    "replan_at_warmup_end",
    "sample_text",
    "read_trainer_state",
    "plot_loss",
    "plot_schedules",
]
