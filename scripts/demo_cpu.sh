#!/usr/bin/env bash
# Set-up and the main job on the embedded default:  bash scripts/demo_cpu.sh [hydra overrides for both runs]
# 1. builds (or reuses) .venv; 2. builds the tiny model, tokenizer and arithmetic data offline (once);
# 3. gives the model a short supervised warm-up with verl's SFT trainer on CPU (once; a random model never scores);
# 4. trains it through recipe/rpo on CPU with RPO-GRPO, then with the full path (rpo.enable=false, verl's own
#    training passes), the same steps;
# 5. compares the two runs (python -m verl_ext.compare): tokens, rollout and step time, validation accuracy, plots.
# Metrics of each run: $RPO_DEMO_RUNS/<rpo|full>/metrics.jsonl (verl's file logger) and .../tensorboard.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
py=.venv/bin/python
export RPO_TINY_DIR=${RPO_TINY_DIR:-$PWD/.cache/rpo_tiny}
runs=${RPO_DEMO_RUNS:-$RPO_TINY_DIR/runs}
$py -m verl_ext.tiny build --out "$RPO_TINY_DIR"
$py -m verl_ext.tiny warmup --assets "$RPO_TINY_DIR"
export VERL_PLATFORM=cpu

train() {  # train NAME [overrides]: one run of the recipe, its metrics under $runs/NAME
  local name=$1
  shift
  mkdir -p "$runs/$name"
  echo "=== demo: the $name run ==="
  VERL_FILE_LOGGER_PATH=$runs/$name/metrics.jsonl TENSORBOARD_DIR=$runs/$name/tensorboard \
    $py -m recipe.rpo.main_rpo --config-name rpo_cpu_tiny trainer.experiment_name="tiny-$name-grpo" "$@"
}
train rpo "$@"
train full rpo.enable=false rpo.shared_prefix=false "$@"  # the baseline as verl runs it: its own passes
echo
# From step 2: step 1 of the first run pays the rollout engine's one-off compilation, which the second run finds cached.
$py -m verl_ext.compare rpo="$runs/rpo/metrics.jsonl" full="$runs/full/metrics.jsonl" --from-step 2 --out "$runs/compare"
