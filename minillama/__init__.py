"""minillama: The Llama 3 Herd of Models (arXiv 2407.21783), re-built to be read, run and graded on a CPU.

Public names: `ModelArgs` (with `ModelArgs.from_preset`), `Transformer`, `generate`, `load_hf`, `save_hf`.
"""

from minillama.model.config import PRESETS, ModelArgs, RopeScaling
from minillama.model import Transformer
from minillama.generate import generate  # the function; the module stays importable as `from minillama.generate import ...`

__version__ = "0.1.0"


def __getattr__(name):  # import the heavier layers only when used
    if name in ("load_hf", "save_hf", "load_checkpoint", "save_checkpoint"):
        from minillama import checkpoint
        return getattr(checkpoint, name)
    raise AttributeError(f"module 'minillama' has no attribute {name!r}")


__all__ = ["ModelArgs", "RopeScaling", "PRESETS", "Transformer", "generate", "load_hf", "save_hf", "__version__"]
