#!/usr/bin/env bash
# One prepared GPU check for one H200: the GPT 350m and 125m presets in bfloat16 through the trainer's own
# train step; prints tokens/s and MFU per preset as JSON lines, as each finishes (unbuffered: output piped
# through a filter is lost when a time limit kills the run). Each preset compiles once (XLA's GPU autotuning
# makes that the slow part), so pass fewer presets when time is short.
# Usage: bash benchmarks/gpu.sh [extra benchmarks.gpu_lm flags]
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -m benchmarks.gpu_lm --presets 350m:16,125m:16 --steps 100 --seq 1024 "$@"
