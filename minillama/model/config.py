"""Model configuration: `ModelArgs` with Meta's field names, the Llama 3.x presets and small CPU presets.

The field names follow Meta's reference (`llama_models/llama3/args.py`) so that a config read from a real
`params.json` maps on one to one. The Hugging Face names are given in comments, for readers coming from there.

Paper: Table 3. Parameter counts are checked against llama-models in tests/test_config.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class RopeScaling:
    """The Llama 3.1 frequency scaling (HF: `rope_scaling` with `rope_type: "llama3"`).

    Wavelengths shorter than `original_max_seq_len / high_freq_factor` are kept, those longer than
    `original_max_seq_len / low_freq_factor` are divided by `factor`, and the band between is interpolated.
    Llama 3.1 uses factor 8; Llama 3.2 1B/3B use factor 32.
    """

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_seq_len: int = 8192  # HF: original_max_position_embeddings

    def validate(self) -> None:
        if self.factor < 1:
            raise ValueError(f"rope_scaling.factor={self.factor} must be >= 1 (1 means no scaling)")
        if not 0 < self.low_freq_factor < self.high_freq_factor:
            raise ValueError(
                f"rope_scaling needs 0 < low_freq_factor < high_freq_factor, got "
                f"{self.low_freq_factor} and {self.high_freq_factor}"
            )
        if self.original_max_seq_len <= 0:
            raise ValueError("rope_scaling.original_max_seq_len must be positive")


@dataclass
class ModelArgs:
    """Hyper-parameters of a Llama 3 decoder. Defaults are those of Llama 3.1-8B."""

    dim: int = 4096  # HF: hidden_size
    n_layers: int = 32  # HF: num_hidden_layers
    n_heads: int = 32  # HF: num_attention_heads
    n_kv_heads: int | None = 8  # HF: num_key_value_heads; None means n_heads (no GQA)
    vocab_size: int = 128256  # 128,000 BPE ranks + 256 special tokens
    multiple_of: int = 1024  # the FFN hidden size is rounded up to a multiple of this
    ffn_dim_multiplier: float | None = 1.3
    norm_eps: float = 1e-5  # HF: rms_norm_eps
    rope_theta: float = 500000.0
    use_scaled_rope: bool = True
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)
    max_seq_len: int = 8192  # HF: max_position_embeddings (the cache length minillama allocates)
    max_batch_size: int = 4  # rows the KV cache holds
    tie_word_embeddings: bool = False  # HF name; the 3.2 1B/3B models tie the output to the embedding
    intermediate_size: int | None = None  # HF name: an explicit FFN hidden size; None applies Meta's rule

    def __post_init__(self) -> None:
        if isinstance(self.rope_scaling, dict):
            self.rope_scaling = RopeScaling(**self.rope_scaling)
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def n_rep(self) -> int:
        """Query heads that share one key/value head."""
        return self.n_heads // self.n_kv_heads

    @property
    def ffn_hidden_dim(self) -> int:
        """Meta's SwiGLU hidden-size rule: 2/3 of 4·dim, times the multiplier, rounded up to `multiple_of`."""
        if self.intermediate_size is not None:
            return self.intermediate_size
        return ffn_hidden_dim(self.dim, self.multiple_of, self.ffn_dim_multiplier)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise a ValueError that says what to change when the fields do not describe a valid model."""
        for name in (
            "dim",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "vocab_size",
            "multiple_of",
            "max_seq_len",
            "max_batch_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads:
            raise ValueError(
                f"dim={self.dim} is not divisible by n_heads={self.n_heads}; choose n_heads among the "
                f"divisors of dim, e.g. {_nearby_divisors(self.dim, self.n_heads)}"
            )
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}: each key/value head "
                f"must serve the same number of query heads; choose n_kv_heads among "
                f"{[d for d in range(1, self.n_heads + 1) if self.n_heads % d == 0]}"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"head_dim = dim / n_heads = {self.head_dim} is odd; rotary embeddings rotate pairs of "
                f"channels, so make dim / n_heads even"
            )
        if self.intermediate_size is not None and (
            not isinstance(self.intermediate_size, int) or self.intermediate_size <= 0
        ):
            raise ValueError(f"intermediate_size must be a positive integer or None, got {self.intermediate_size!r}")
        if self.ffn_dim_multiplier is not None and self.ffn_dim_multiplier <= 0:
            raise ValueError(f"ffn_dim_multiplier must be positive or None, got {self.ffn_dim_multiplier}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps}")
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta must be positive, got {self.rope_theta}")
        if self.use_scaled_rope:
            self.rope_scaling.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ModelArgs:
        """A preset by name (see `PRESETS`), with any field overridden by keyword."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        kwargs = dataclasses.asdict(PRESETS[name])
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelArgs:
        """Build from a Meta `params.json`-style dict; unknown keys are an error naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelArgs fields {unknown}; valid fields are {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ffn_hidden_dim(dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
    """`h = int(2·4·dim/3)`, then `int(multiplier·h)`, then rounded up to a multiple of `multiple_of`."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * math.ceil(hidden / multiple_of)


def _nearby_divisors(n: int, near: int) -> list[int]:
    """Head counts near `near` that divide `n` and leave an even head_dim."""
    divs = [d for d in range(1, n + 1) if n % d == 0 and (n // d) % 2 == 0]
    return sorted(divs, key=lambda d: abs(d - near))[:3]


def _llama(dim, n_layers, n_heads, mult, multiple_of, factor=8.0, tied=False, max_seq_len=131072):
    return ModelArgs(
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=8,
        vocab_size=128256,
        multiple_of=multiple_of,
        ffn_dim_multiplier=mult,
        norm_eps=1e-5,
        rope_theta=500000.0,
        use_scaled_rope=True,
        rope_scaling=RopeScaling(factor=factor),
        max_seq_len=max_seq_len,
        max_batch_size=1,
        tie_word_embeddings=tied,
    )


def _small(dim, n_layers, n_heads, n_kv_heads, vocab_size=8192, max_seq_len=512):
    return ModelArgs(
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        vocab_size=vocab_size,
        multiple_of=32,
        ffn_dim_multiplier=None,
        norm_eps=1e-5,
        rope_theta=500000.0,
        use_scaled_rope=False,
        max_seq_len=max_seq_len,
        max_batch_size=16,
        tie_word_embeddings=True,
    )


#: The herd (paper Table 3) and models small enough for a laptop CPU.
PRESETS: dict[str, ModelArgs] = {
    "llama3.1-8b": _llama(4096, 32, 32, 1.3, 1024),
    "llama3.1-70b": _llama(8192, 80, 64, 1.3, 4096),
    "llama3.1-405b": _llama(16384, 126, 128, 1.2, 4096),
    "llama3.2-1b": _llama(2048, 16, 32, 1.5, 256, factor=32.0, tied=True),
    "llama3.2-3b": _llama(3072, 28, 24, 1.0, 256, factor=32.0, tied=True),
    # CPU presets, vocabulary of the course's own 8K BPE (8,192 ids including the 256 specials)
    "tiny": _small(64, 2, 4, 2, max_seq_len=256),  # ~0.6M parameters: unit tests, smoke runs
    # ~6.3M: the default pre-training run (15 minutes on 2 cores). 4 heads of 64 and 1 KV head (Llama 3's 4:1 GQA)
    # ran 1.15x faster on a CPU than 8 heads of 32 / 2 KV heads, at the same held-out loss (`minillama pretrain`)
    "small": _small(256, 6, 4, 1),
    "base": _small(384, 8, 6, 2, max_seq_len=1024),  # ~16M: for a longer run
}

DEFAULT_PRESET = "small"
