#!/usr/bin/env bash
# The prepared GPU benchmark: full-size layouts with random weights (FLUX.1 Fill 12B transformer and
# VAE, Qwen2.5-VL-7B) in bf16, built in place on the GPU, in one run of at most 8 minutes on one
# H100/H200. Prints, each beside its same-run baseline:
#   1. generation: seconds per candidate, N = 4 in one batched call vs one call per candidate, 1024x1024;
#   2. the judge: scoring and training pairs/s at batch 16, peak memory;
#   3. RL: seconds per step and peak GPU memory, Algorithms 1 and 2 at 512x512 and 1024x1024, LoRA
#      rank 32 with gradient checkpointing.
# Usage: bench/gpu.sh [--dry-run]   (--dry-run: the same code path with tiny models on the CPU; the
# test suite runs it). Each part has its own time limit, so one that hangs or runs out of memory
# leaves the others their time; the output says which part stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DRY=()
SCALE=1
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY=(--dry-run)
    SCALE=3  # a CPU of a busy test machine, not a GPU
elif [[ -n "${1:-}" ]]; then
    echo "usage: bench/gpu.sh [--dry-run]" >&2
    exit 2
fi

"$PYTHON" - <<'PY'
import platform

import diffusers
import torch
import transformers

device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device (CPU)"
print(f"== {device}; torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}, "
      f"transformers {transformers.__version__}, Python {platform.python_version()}")
PY

status=0
part() {
    local limit=$(($1 * SCALE)) title=$2
    shift 2
    echo
    echo "== $title"
    timeout --signal=INT --kill-after=10 "$limit" "$PYTHON" "$@" "${DRY[@]}"
    local code=$?
    if [[ $code -eq 124 || $code -eq 130 ]]; then
        echo "!! $title: stopped at its limit of ${limit}s"
        status=1
    elif [[ $code -ne 0 ]]; then
        echo "!! $title: failed (exit $code)"
        status=1
    fi
}

part 140 "generation: N = 4 batched vs one call per candidate" bench/generation_throughput.py --full-size
part 100 "judge: scoring and training pairs/s" bench/reward_model.py --full-size
part 220 "RL: seconds per step and peak memory" bench/rl_step.py --full-size
exit $status
