"""Shared set-up of the model benchmarks: the benchmark config and a Hugging Face twin with the same weights."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

import torch

from minillama import ModelArgs, Transformer
from minillama.bench._timing import summary
from minillama.checkpoint import save_hf
from minillama.utils import keep_freed_memory

#: The config the issue names: dim 288, 6 layers, 6 heads, 2 kv heads, vocab 8192.
BENCH_ARGS = dict(
    dim=288,
    n_layers=6,
    n_heads=6,
    n_kv_heads=2,
    vocab_size=8192,
    multiple_of=32,
    ffn_dim_multiplier=None,
    max_seq_len=1024,
    use_scaled_rope=False,
    tie_word_embeddings=False,
)


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--threads", type=int, default=int(os.environ.get("MINILLAMA_THREADS", "2")))
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are over these)")
    ap.add_argument(
        "--precision",
        choices=["highest", "high", "medium"],
        default="highest",
        help="torch.set_float32_matmul_precision for all variants",
    )
    ap.add_argument("--compile", action="store_true", help="also time minillama under torch.compile")


def setup(a) -> None:
    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as every command does (`minillama.utils.set_threads`)
    torch.set_float32_matmul_precision(a.precision)
    print(
        f"torch {torch.__version__}, {a.threads} thread(s), float32 matmul precision {a.precision!r}, "
        f"{platform.processor() or platform.machine()}"
    )


def hf_twin(model: Transformer) -> torch.nn.Module:
    """A `transformers.LlamaForCausalLM` (float32, its default "sdpa" attention) holding exactly the weights of
    `model`: exported with `save_hf` and loaded with `from_pretrained`. Raises ImportError without transformers."""
    # optional ([dev] extra): the reference the benchmarks measure against
    from transformers import LlamaForCausalLM

    with tempfile.TemporaryDirectory() as d:
        save_hf(model, d)
        return LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="sdpa")


def bench_models(seed: int = 0) -> tuple[Transformer, torch.nn.Module]:
    """A minillama model and a `transformers.LlamaForCausalLM` holding exactly the same weights."""
    model = Transformer(ModelArgs(**BENCH_ARGS)).init_weights(seed=seed)
    return model, hf_twin(model)


class FixedBatch:
    """The loader protocol of `Trainer`, always the same batch of `tokens` (b, s+1): no data-loading cost in any
    variant."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens

    def next_batch(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokens[:rows, :-1], self.tokens[:rows, 1:]

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def print_rates(times: dict[str, list[float]], n_tokens: int, reference: str = "transformers") -> None:
    """One line per variant: tokens/s (median and best) and the ratio against `reference`."""
    ref_med, ref_best = summary(times[reference])
    for name, t in times.items():
        med, best = summary(t)
        print(
            f"{name:<34} {n_tokens / med:>10.0f} tok/s   reference {n_tokens / ref_med:>10.0f} tok/s   "
            f"ratio {ref_med / med:5.2f}x   [best {n_tokens / best:.0f} vs {n_tokens / ref_best:.0f}]"
        )
