#!/usr/bin/env bash
# The issue-13 GPU checks, prepared for a session that is lent a GPU (none has been yet).
# (a) Darcy FNO protocol at s = 85 (1000/100 samples), choral and neuraloperator's FNO on the
#     same GPU with the same budget: choral's rel L2 against the paper's 0.0108, 90% coverage
#     in [0.87, 0.93], both wall times. (b) stacked ensemble cost on the GPU: s = 8 MLP members
#     and s = 4 U-Net members against one member (target <= 1.5x).
# Run from the repository root after `make test` built .venv; needs the bench extra:
#     .venv/bin/pip install -e ".[bench]" && bash benchmarks/gpu_check.sh OUT_DIR [BUDGET_S]
set -euo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [BUDGET_SECONDS]}
budget=${2:-600}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$out/gpu.txt"
.venv/bin/python benchmarks/ensemble_speed.py --device cuda --epochs 3 --repeats 3 \
    > "$out/ensemble_speed_gpu.json"
.venv/bin/python benchmarks/darcy_fno.py --device cuda --threads 4 --workers 8 \
    --budget "$budget" --cache "$out/cache" > "$out/darcy_fno_gpu.json"
