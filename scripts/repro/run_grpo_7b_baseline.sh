#!/usr/bin/env bash
# GRPO, DeepSeek-R1-Distill-Qwen-7B, full-path baseline; its pair: run_grpo_7b_rpo.sh. Knobs: train.sh.
set -xeuo pipefail
export MODEL_SIZE=7b ALGO=grpo RPO=0
exec bash "$(dirname "${BASH_SOURCE[0]}")/train.sh" "$@"
