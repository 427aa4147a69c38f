#!/usr/bin/env bash
# CUDA checks of issue #19, for a session that has a GPU: ours vs TRL (tuned and defaults) and the
# memory estimator vs measured, for LoRA / QLoRA / Full on the embedded model and on a randomly
# initialised Llama-3.2-1B-shaped model, bf16, sdpa (benchmarks/gpu_checks.py says what is run).
# About 10 minutes on one H100; writes benchmarks/results/gpu-training.json (after every row).
#
#   make setup && benchmarks/gpu.sh
#
# Exit status: 0 all rows measured, 1 some rows failed (their error is in the JSON), 2 no CUDA
# device, 3 no environment, 124 time limit reached (GPU_CHECKS_LIMIT_S, default 570 s).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
LIMIT_S="${GPU_CHECKS_LIMIT_S:-570}"

if [ ! -x "$PYTHON" ]; then
  echo "gpu.sh: $PYTHON not found: run 'make setup' first (the embedded model must be provisioned too)." >&2
  exit 3
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu.sh: no CUDA device (torch.cuda.is_available() is False); these checks need one GPU. Nothing was run." >&2
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled
# timeout signals the whole process group, so the per-side child processes stop with it
timeout --kill-after=15 "$LIMIT_S" "$PYTHON" -m benchmarks.gpu_checks
