"""minillama: The Llama 3 Herd of Models (arXiv 2407.21783), re-built to be read, run and graded on a CPU.

Public names: `ModelArgs` (with `ModelArgs.from_preset`), `RopeScaling`, `PRESETS`, `Transformer`, `generate`,
`load_checkpoint`, `save_checkpoint`, `load_hf`, `save_hf`.

They load on first use (PEP 562), so importing a stdlib-only part of the package, such as the code interpreter's
sandbox (`minillama.tooluse.tools.sandbox`), does not pull in torch and the model. Import the generation function as
`from minillama.generate import generate`: `minillama.generate` is also the module's name.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "ModelArgs": "minillama.model.config", "RopeScaling": "minillama.model.config", "PRESETS": "minillama.model.config",
    "Transformer": "minillama.model.model", "generate": "minillama.generate",
    "load_checkpoint": "minillama.checkpoint", "save_checkpoint": "minillama.checkpoint",
    "load_hf": "minillama.checkpoint", "save_hf": "minillama.checkpoint",
}


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # `minillama.generate` is the function from now on, as it always was
        return value
    raise AttributeError(f"module 'minillama' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))


__all__ = ["ModelArgs", "RopeScaling", "PRESETS", "Transformer", "generate", "load_checkpoint", "save_checkpoint",
           "load_hf", "save_hf", "__version__"]
