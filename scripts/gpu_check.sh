#!/usr/bin/env bash
# GPU check of issue 14 ("Scale out on torch's own engine"): about 2 minutes on one H200, under 3.
#   1. `minillama pretrain --device cuda`, one process, the small preset for ~60 s (planned from the measured speed);
#   2. `torchrun --nproc_per_node=1 -m minillama.pretrain --dist fsdp` on the same shards, 300 steps (NCCL, FSDP2);
#   3. tokens/s and the final loss of both runs, and the FSDP checkpoint loaded on the CPU.
# Needs only this repository and its Python dependencies (torch, numpy, einops, safetensors, tqdm, matplotlib,
# regex); it downloads nothing: the corpus is the local Python standard library, the tokenizer ships with the repo.
# Usage: bash scripts/gpu_check.sh [output folder]   (default: a fresh folder under /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MINILLAMA_PROGRESS=0 MPLBACKEND=Agg
OUT="${1:-$(mktemp -d /tmp/minillama-gpu-XXXXXX)}"
echo "output in $OUT"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"

COMMON=(--preset small --seq-len 256 --batch-size 32 --eval-every 100)
start=$SECONDS
timeout 150 "$PY" -m minillama pretrain --device cuda "${COMMON[@]}" --data stdlib --limit-mb 2 --minutes 1 \
    --out "$OUT/single"
echo "single process: $((SECONDS - start)) s wall"

start=$SECONDS
timeout 120 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m minillama.pretrain --device cuda \
    --dist fsdp "${COMMON[@]}" --data "$OUT/single/data" --steps 300 --out "$OUT/fsdp"
echo "torchrun fsdp: $((SECONDS - start)) s wall"

"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

for name in ("single", "fsdp"):
    s = json.loads((Path(sys.argv[1]) / name / "checkpoint" / "trainer.json").read_text())
    last, held = s["history"][-1], s["val_history"][-1].get("heldout", {})
    print(
        f"{name:>6}: {s['step']} steps, {s['tokens_seen'] / s['wall_s']:,.0f} tokens/s, final train loss "
        f"{last['loss']:.3f}, held-out {held.get('nats_per_token', float('nan')):.3f} nats/token"
    )
PY
"$PY" -c "from minillama.checkpoint import load_checkpoint; import sys; \
m = load_checkpoint(sys.argv[1]); print('fsdp checkpoint loads on the CPU:', m.num_params(), 'parameters')" \
    "$OUT/fsdp/checkpoint"
