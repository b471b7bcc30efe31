#!/usr/bin/env bash
# Final evaluation of the reproduction: pass@1 averaged over EVAL_N samples per problem on AIME 2024, AIME 2025,
# AMC 2023 and MATH-500, with the authors' sampling (T=0.6, top_p=0.95) and a long budget (32768 tokens).
#
#   MODEL_PATH=<HF model dir> EXPERIMENT_NAME=eval-grpo-1.5b-rpo bash scripts/repro/eval.sh [extra hydra overrides]
#   DRY_RUN=1 ...   print the composed config and stop
#
# It is verl's own validation (trainer.val_only=true through recipe/rpo/main_rpo.py), so the numbers are computed the
# way the training runs' val-core metrics are: per benchmark (data_source), val-core/<data_source>/acc/mean@<EVAL_N>
# is the mean over problems of the share of the EVAL_N answers that are correct = pass@1 averaged over EVAL_N samples.
# MODEL_PATH defaults to the base model of MODEL_SIZE. To evaluate a training checkpoint, merge it to a HF directory
# first:  python -m verl.model_merger merge --backend fsdp --local_dir <ckpt>/global_step_<N>/actor --target_dir <dir>
set -xeuo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

EVAL_N=${EVAL_N:-8}
EVAL_TEMPERATURE=${EVAL_TEMPERATURE:-0.6}
EVAL_TOP_P=${EVAL_TOP_P:-0.95}
EVAL_RESPONSE_LENGTH=${EVAL_RESPONSE_LENGTH:-32768}
PROMPT_LENGTH=${PROMPT_LENGTH:-512}
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.8}
# verl builds a training dataloader even when it only validates: any small verl parquet serves.
EVAL_TRAIN_FILES=${EVAL_TRAIN_FILES:-$DATA_DIR/aime2024.parquet}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-eval-$MODEL_SIZE-$(basename "$MODEL_PATH")}
# One JSONL of prompts, answers and scores per benchmark run (verl's trainer.validation_data_dir).
GENERATIONS_DIR=${GENERATIONS_DIR:-$REPO_ROOT/eval_generations/$EXPERIMENT_NAME}
MAX_TOKENS_PER_GPU=$((PROMPT_LENGTH + EVAL_RESPONSE_LENGTH))

DATA=(
  data.train_files="$EVAL_TRAIN_FILES"
  data.val_files="$VAL_FILES"
  data.max_prompt_length="$PROMPT_LENGTH"
  data.max_response_length="$EVAL_RESPONSE_LENGTH"
  data.train_batch_size=8
  data.filter_overlong_prompts=true
)
MODEL=(
  actor_rollout_ref.model.path="$MODEL_PATH"
  actor_rollout_ref.model.use_remove_padding=true
)
ACTOR=(
  actor_rollout_ref.actor.ppo_mini_batch_size=8
  actor_rollout_ref.actor.use_dynamic_bsz=true
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
  actor_rollout_ref.actor.use_kl_loss=false
)
ROLLOUT=(
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.temperature="$EVAL_TEMPERATURE"
  actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
  actor_rollout_ref.rollout.gpu_memory_utilization="$GPU_MEMORY_UTILIZATION"
  actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true
  actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
  actor_rollout_ref.rollout.val_kwargs.n="$EVAL_N"
  actor_rollout_ref.rollout.val_kwargs.temperature="$EVAL_TEMPERATURE"
  actor_rollout_ref.rollout.val_kwargs.top_p="$EVAL_TOP_P"
  actor_rollout_ref.rollout.val_kwargs.top_k=-1
  actor_rollout_ref.rollout.val_kwargs.do_sample=true
)
TRAINER=(
  algorithm.use_kl_in_reward=false
  rpo.enable=false
  rpo.shared_prefix=false
  trainer.val_only=true
  trainer.val_before_train=true
  trainer.resume_mode=disable
  trainer.project_name="$PROJECT_NAME"
  trainer.experiment_name="$EXPERIMENT_NAME"
  trainer.logger="$LOGGER"
  trainer.n_gpus_per_node="$N_GPUS"
  trainer.nnodes="$NNODES"
  trainer.validation_data_dir="$GENERATIONS_DIR"
)

tracking "$EXPERIMENT_NAME"
launch "${DATA[@]}" "${MODEL[@]}" "${ACTOR[@]}" "${ROLLOUT[@]}" "${TRAINER[@]}" "$@"
