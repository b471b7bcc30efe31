#!/usr/bin/env bash
# Set-up and the main job on the embedded default:  bash scripts/demo_cpu.sh [hydra overrides]
# 1. builds (or reuses) .venv; 2. builds the tiny model, tokenizer and arithmetic data offline (once);
# 3. gives the model a short supervised warm-up with verl's SFT trainer on CPU (once; a random model never scores);
# 4. trains it with RPO-GRPO through recipe/rpo on CPU for a few steps (rpo.enable=false gives the full-path baseline).
# 5. prints a short summary (tokens against the full path, cache hit rate, validation before/after, where files are).
# Metrics: console, $RPO_TINY_DIR/runs/metrics.jsonl (verl's file logger) and tensorboard under $RPO_TINY_DIR/runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
py=.venv/bin/python
export RPO_TINY_DIR=${RPO_TINY_DIR:-$PWD/.cache/rpo_tiny}
$py -m verl_ext.tiny build --out "$RPO_TINY_DIR"
$py -m verl_ext.tiny warmup --assets "$RPO_TINY_DIR"
export VERL_PLATFORM=cpu
export VERL_FILE_LOGGER_PATH=${VERL_FILE_LOGGER_PATH:-$RPO_TINY_DIR/runs/metrics.jsonl}
export TENSORBOARD_DIR=${TENSORBOARD_DIR:-$RPO_TINY_DIR/runs/tensorboard}
mkdir -p "$(dirname "$VERL_FILE_LOGGER_PATH")"
$py -m recipe.rpo.main_rpo --config-name rpo_cpu_tiny "$@"
echo
$py -m verl_ext.experiments.run_summary "$VERL_FILE_LOGGER_PATH" --tensorboard "$TENSORBOARD_DIR"
