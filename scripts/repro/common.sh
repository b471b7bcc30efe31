# Sourced by the reproduction scripts (train.sh, eval.sh): the model-size table, the data files that
# scripts/repro/prepare_data.sh writes, and `launch`, which runs the recipe or, with DRY_RUN=1, only prints the
# config it would run with. Every value is an environment variable with a default: ${VAR:-default}.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# `python -m recipe.rpo.main_rpo` must find this checkout's recipe from any working directory.
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
# The interpreter: $PYTHON if set, else the project's venv (scripts/install.sh) when it exists, else python3 on PATH.
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON=$REPO_ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
echo "scripts/repro: using $PYTHON" >&2

# The paper's two models. Rollout tensor parallelism: the 7B model's KV cache for G=16 long answers wants 2 GPUs.
MODEL_SIZE=${MODEL_SIZE:-1.5b}
case "$MODEL_SIZE" in
  1.5b) MODEL_PATH=${MODEL_PATH:-deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B}; ROLLOUT_TP=${ROLLOUT_TP:-1} ;;
  7b) MODEL_PATH=${MODEL_PATH:-deepseek-ai/DeepSeek-R1-Distill-Qwen-7B}; ROLLOUT_TP=${ROLLOUT_TP:-2} ;;
  *) echo "MODEL_SIZE must be 1.5b or 7b, got '$MODEL_SIZE'" >&2; exit 2 ;;
esac

# Outputs of scripts/repro/prepare_data.sh (data_prep/prepare.py): open-rs for training, four benchmarks to validate.
DATA_DIR=${DATA_DIR:-$HOME/data/rpo}
TRAIN_FILES=${TRAIN_FILES:-$DATA_DIR/open_rs.parquet}
VAL_FILES=${VAL_FILES:-"['$DATA_DIR/aime2024.parquet','$DATA_DIR/aime2025.parquet','$DATA_DIR/amc2023.parquet','$DATA_DIR/math500.parquet']"}

N_GPUS=${N_GPUS:-8}
NNODES=${NNODES:-1}
PROJECT_NAME=${PROJECT_NAME:-rpo-repro}
# wandb for the dashboards, verl's file logger for `python -m verl_ext.compare` without a wandb server.
LOGGER=${LOGGER:-"['console','wandb','file']"}
RUNS_ROOT=${RUNS_ROOT:-$REPO_ROOT/runs}

# tracking EXPERIMENT_NAME: wandb online when a key is set (WANDB_API_KEY, or `wandb login`'s ~/.netrc), offline
# otherwise (`wandb sync` uploads later); verl's file logger writes $RUNS_ROOT/$PROJECT_NAME/EXPERIMENT_NAME/metrics.jsonl
# (verl truncates it when a run resumes: keep a copy of a finished run's file before resuming it).
tracking() {
  if [[ -z "${WANDB_MODE:-}" && -z "${WANDB_API_KEY:-}" ]] && ! grep -qs "api.wandb.ai" "$HOME/.netrc"; then
    export WANDB_MODE=offline
  fi
  export VERL_FILE_LOGGER_PATH=${VERL_FILE_LOGGER_PATH:-$RUNS_ROOT/$PROJECT_NAME/$1/metrics.jsonl}
  [[ "${DRY_RUN:-0}" == 1 ]] || mkdir -p "$(dirname "$VERL_FILE_LOGGER_PATH")"
  echo "scripts/repro: wandb ${WANDB_MODE:-online}; metrics also in $VERL_FILE_LOGGER_PATH" >&2
}

# Run recipe/rpo/main_rpo.py with these hydra overrides; DRY_RUN=1: print the composed, resolved config and stop
# (no Ray, no GPU; model and data paths need not exist).
launch() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    exec "$PYTHON" "$REPO_ROOT/scripts/repro/compose.py" "$@"
  fi
  exec "$PYTHON" -m recipe.rpo.main_rpo "$@"
}
