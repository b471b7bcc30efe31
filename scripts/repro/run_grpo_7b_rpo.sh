#!/usr/bin/env bash
# GRPO, DeepSeek-R1-Distill-Qwen-7B, with RPO; its pair: run_grpo_7b_baseline.sh. Knobs: train.sh.
set -xeuo pipefail
export MODEL_SIZE=7b ALGO=grpo RPO=1
exec bash "$(dirname "${BASH_SOURCE[0]}")/train.sh" "$@"
