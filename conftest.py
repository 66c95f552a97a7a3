"""Root conftest: environment for everything pytest runs, notebooks included (their kernels inherit it).

Notebooks run in smoke mode (small sizes) under pytest unless MINILLAMA_SMOKE is set otherwise; progress bars are
off; plots go to the non-interactive Agg backend; torch uses one thread per process.
"""

import os
from pathlib import Path

os.environ.setdefault("MINILLAMA_SMOKE", "1")
os.environ.setdefault("MINILLAMA_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
os.environ.setdefault("IPYTHONDIR", str(Path(__file__).resolve().parent / ".ci" / "ipython"))  # plain tracebacks
