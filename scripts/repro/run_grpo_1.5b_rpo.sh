#!/usr/bin/env bash
# GRPO, DeepSeek-R1-Distill-Qwen-1.5B, with RPO; its pair: run_grpo_1.5b_baseline.sh. Knobs: train.sh.
set -xeuo pipefail
export MODEL_SIZE=1.5b ALGO=grpo RPO=1
exec bash "$(dirname "${BASH_SOURCE[0]}")/train.sh" "$@"
