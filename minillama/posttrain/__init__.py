"""Post-training on a CPU (paper §4): SFT, a reward model, rejection sampling, DPO and model averaging.

Modules: `tasks` (a checkable task family), `data` (chat rows, loss masks, packing), `losses` (Bradley–Terry and
DPO), `sft`, `reward`, `rejection`, `dpo`, `averaging`, and `pipeline` (every stage end to end, measured).
"""

from minillama.posttrain.losses import bradley_terry_loss, dpo_loss, dpo_total_loss, nll_term

__all__ = ["dpo_loss", "dpo_total_loss", "bradley_terry_loss", "nll_term"]
