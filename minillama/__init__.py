"""minillama: The Llama 3 Herd of Models (arXiv 2407.21783), re-built to be read, run and graded on a CPU.

Public names: `ModelArgs` (with `ModelArgs.from_preset`), `RopeScaling`, `PRESETS`, `Transformer`, `generate`,
`load_checkpoint`, `save_checkpoint`, `load_hf`, `save_hf`.

They load on first use (PEP 562), so importing a stdlib-only part of the package, such as the code interpreter's
sandbox (`minillama.tooluse.tools.sandbox`), does not pull in torch and the model.
"""

import importlib
import os
import sys
import types

# Idle OpenMP threads sleep instead of spinning, so a run leaves the rest of a shared machine usable. The OpenMP
# runtime reads this once, when torch loads, so it is only set here, before torch, and only when the user has not.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_PUBLIC = {
    "ModelArgs": "minillama.model.config",
    "RopeScaling": "minillama.model.config",
    "PRESETS": "minillama.model.config",
    "Transformer": "minillama.model.model",
    "load_checkpoint": "minillama.checkpoint",
    "save_checkpoint": "minillama.checkpoint",
    "load_hf": "minillama.checkpoint",
    "save_hf": "minillama.checkpoint",
}


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'minillama' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC) + ["generate"])


class _Package(types.ModuleType):
    """`minillama.generate` names both a module and its function. Python sets a package's attribute to each
    submodule it imports, so without this `from minillama import generate` would give the module whenever
    `minillama.generate` had been imported first; here the attribute is always the function."""

    @property
    def generate(self):
        return importlib.import_module("minillama.generate").generate

    @generate.setter
    def generate(self, value):  # the import system storing the submodule: keep serving the function
        pass


sys.modules[__name__].__class__ = _Package


__all__ = [
    "ModelArgs",
    "RopeScaling",
    "PRESETS",
    "Transformer",
    "generate",
    "load_checkpoint",
    "save_checkpoint",
    "load_hf",
    "save_hf",
    "__version__",
]
