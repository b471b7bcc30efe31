#!/usr/bin/env bash
# One training run of the RPO paper reproduction (arXiv 2601.19404) through recipe/rpo on one 8-GPU node:
# DeepSeek-R1-Distill-Qwen-1.5B or -7B on open-rs, GRPO or DAPO, with RPO (RPO=1) or as the full-path baseline
# (RPO=0). A pair differs only in rpo.* and the experiment name, so its dashboards compare RPO alone.
#
#   MODEL_SIZE=1.5b|7b ALGO=grpo|dapo RPO=1|0 bash scripts/repro/train.sh [extra hydra overrides]
#   DRY_RUN=1 ...   print the composed config and stop (no Ray, no GPU; paths need not exist)
#
# The run_<algo>_<size>_<rpo|baseline>.sh wrappers fix MODEL_SIZE, ALGO and RPO. Every other knob is an environment
# variable whose default is the authors' setting (README.md, "Reproducing the paper").
set -xeuo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ALGO=${ALGO:-grpo}
RPO=${RPO:-1}
case "$ALGO" in grpo | dapo) ;; *) echo "ALGO must be grpo or dapo, got '$ALGO'" >&2; exit 2 ;; esac
case "$RPO" in 1) VARIANT=rpo ;; 0) VARIANT=baseline ;; *) echo "RPO must be 1 or 0, got '$RPO'" >&2; exit 2 ;; esac

# ---- the authors' settings
PROMPT_LENGTH=${PROMPT_LENGTH:-512}
RESPONSE_LENGTH=${RESPONSE_LENGTH:-2048}  # their second setting: 4096
GROUP_SIZE=${GROUP_SIZE:-16}
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-84}  # prompts per optimizer step (7 training GPUs x 12 accumulation x 1)
TEMPERATURE=${TEMPERATURE:-0.7}
TOP_P=${TOP_P:-1.0}
LR=${LR:-1e-6}
LR_WARMUP_RATIO=${LR_WARMUP_RATIO:-0.1}
MIN_LR_RATIO=${MIN_LR_RATIO:-0.1}         # cosine decay to 0.1 x LR
WEIGHT_DECAY=${WEIGHT_DECAY:-0.0}         # TRL's default, which the authors' configs keep
KL_COEF=${KL_COEF:-0.04}                  # TRL's GRPO beta: k3 (low_var_kl) to the frozen reference, as a loss term
EPOCHS=${EPOCHS:-4}
SEED=${SEED:-42}
# One optimizer update per rollout batch (the authors' TRL GRPO: num_iterations 1, no mini-batches).
PPO_MINI_BATCH_SIZE=${PPO_MINI_BATCH_SIZE:-$TRAIN_BATCH_SIZE}

if [[ "$ALGO" == grpo ]]; then
  USE_KL_LOSS=${USE_KL_LOSS:-true}
  LOSS_AGG_MODE=${LOSS_AGG_MODE:-seq-mean-token-mean}  # TRL's GRPO loss: token mean per answer, then mean
  CLIP_RATIO_HIGH=${CLIP_RATIO_HIGH:-0.2}
  TOTAL_TRAINING_STEPS=${TOTAL_TRAINING_STEPS:-null}   # null: verl counts len(dataloader) x EPOCHS
  TOTAL_EPOCHS=${TOTAL_EPOCHS:-$EPOCHS}
else
  # DAPO's own settings: no KL term, clip-higher, token-level loss, dynamic sampling, overlong penalty.
  USE_KL_LOSS=${USE_KL_LOSS:-false}
  LOSS_AGG_MODE=${LOSS_AGG_MODE:-token-mean}
  CLIP_RATIO_HIGH=${CLIP_RATIO_HIGH:-0.28}
  GEN_BATCH_SIZE=${GEN_BATCH_SIZE:-$((TRAIN_BATCH_SIZE * 3))}  # prompts per generation batch (verl's DAPO: 3x)
  MAX_NUM_GEN_BATCHES=${MAX_NUM_GEN_BATCHES:-10}
  OVERLONG_BUFFER_LEN=${OVERLONG_BUFFER_LEN:-$((RESPONSE_LENGTH / 4))}
  OVERLONG_PENALTY_FACTOR=${OVERLONG_PENALTY_FACTOR:-1.0}
  # The filter draws extra generation batches, so epochs no longer fix the step count: run as many optimizer steps
  # as the GRPO run (TRAIN_PROMPTS: open-rs' 7000 rows; verl drops the last partial batch) and let the data cycle.
  TRAIN_PROMPTS=${TRAIN_PROMPTS:-7000}
  TOTAL_TRAINING_STEPS=${TOTAL_TRAINING_STEPS:-$((TRAIN_PROMPTS / TRAIN_BATCH_SIZE * EPOCHS))}
  TOTAL_EPOCHS=${TOTAL_EPOCHS:-100}
fi

# ---- RPO
RPO_MAX_NEW_TOKENS=${RPO_MAX_NEW_TOKENS:-300}  # the authors cut k ~ U{1..299} tokens and regenerate up to k
RPO_CACHE_INIT=${RPO_CACHE_INIT:-null}         # an offline cache (data_prep/build_cache.py); null: seed online
# The cut policy (recipe/rpo/README.md, "Choosing a cut"): tail (the authors', the default: the scripts reproduce the
# paper), adaptive (a per-prompt depth under a token budget of RPO_TOKEN_SHARE of the full path's tokens; the suffix
# may run what was cut + RPO_MAX_NEW_TOKENS), uniform or verified (SPEC-RL's check; stores behaviour log-probs).
RPO_CUT=${RPO_CUT:-tail}
RPO_TOKEN_SHARE=${RPO_TOKEN_SHARE:-0.3}
case "$RPO_CUT" in tail | adaptive | uniform | verified) ;;
  *) echo "RPO_CUT must be tail, adaptive, uniform or verified, got '$RPO_CUT'" >&2; exit 2 ;;
esac

# ---- memory and throughput (not the paper's; per H100 80GB)
PROMPT_RESPONSE=$((PROMPT_LENGTH + RESPONSE_LENGTH))
case "$MODEL_SIZE" in
  1.5b) TOKENS_PER_GPU_FACTOR=${TOKENS_PER_GPU_FACTOR:-6}; REF_PARAM_OFFLOAD=${REF_PARAM_OFFLOAD:-false} ;;
  7b) TOKENS_PER_GPU_FACTOR=${TOKENS_PER_GPU_FACTOR:-4}; REF_PARAM_OFFLOAD=${REF_PARAM_OFFLOAD:-true} ;;
esac
ACTOR_TOKENS_PER_GPU=${ACTOR_TOKENS_PER_GPU:-$((PROMPT_RESPONSE * TOKENS_PER_GPU_FACTOR))}
LOGPROB_TOKENS_PER_GPU=${LOGPROB_TOKENS_PER_GPU:-$((ACTOR_TOKENS_PER_GPU * 2))}
ACTOR_PARAM_OFFLOAD=${ACTOR_PARAM_OFFLOAD:-false}
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.6}

# ---- validation during training (the final numbers come from eval.sh)
VAL_N=${VAL_N:-1}
TEST_FREQ=${TEST_FREQ:-25}
SAVE_FREQ=${SAVE_FREQ:-50}
MAX_CKPT_TO_KEEP=${MAX_CKPT_TO_KEEP:-2}

NAME_SUFFIX=""
if [[ "$RPO" == 1 && "$RPO_CUT" != tail ]]; then NAME_SUFFIX="-$RPO_CUT"; fi
if [[ "$RESPONSE_LENGTH" != 2048 ]]; then NAME_SUFFIX="$NAME_SUFFIX-r$RESPONSE_LENGTH"; fi
EXPERIMENT_NAME=${EXPERIMENT_NAME:-$ALGO-$MODEL_SIZE-$VARIANT$NAME_SUFFIX}
CKPT_ROOT=${CKPT_ROOT:-$REPO_ROOT/checkpoints}

DATA=(
  data.train_files="$TRAIN_FILES"
  data.val_files="$VAL_FILES"
  data.max_prompt_length="$PROMPT_LENGTH"
  data.max_response_length="$RESPONSE_LENGTH"
  data.train_batch_size="$TRAIN_BATCH_SIZE"
  data.filter_overlong_prompts=true
  data.truncation=error
  data.seed="$SEED"
)
MODEL=(
  actor_rollout_ref.model.path="$MODEL_PATH"
  actor_rollout_ref.model.use_remove_padding=true
  actor_rollout_ref.model.enable_gradient_checkpointing=true
)
ACTOR=(
  actor_rollout_ref.actor.optim.lr="$LR"
  actor_rollout_ref.actor.optim.lr_scheduler_type=cosine
  actor_rollout_ref.actor.optim.lr_warmup_steps_ratio="$LR_WARMUP_RATIO"
  actor_rollout_ref.actor.optim.min_lr_ratio="$MIN_LR_RATIO"
  actor_rollout_ref.actor.optim.weight_decay="$WEIGHT_DECAY"
  actor_rollout_ref.actor.ppo_mini_batch_size="$PPO_MINI_BATCH_SIZE"
  actor_rollout_ref.actor.ppo_epochs=1
  actor_rollout_ref.actor.use_dynamic_bsz=true
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$ACTOR_TOKENS_PER_GPU"
  actor_rollout_ref.actor.use_kl_loss="$USE_KL_LOSS"
  actor_rollout_ref.actor.kl_loss_coef="$KL_COEF"
  actor_rollout_ref.actor.kl_loss_type=low_var_kl
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.actor.loss_agg_mode="$LOSS_AGG_MODE"
  actor_rollout_ref.actor.clip_ratio_low=0.2
  actor_rollout_ref.actor.clip_ratio_high="$CLIP_RATIO_HIGH"
  actor_rollout_ref.actor.fsdp_config.param_offload="$ACTOR_PARAM_OFFLOAD"
  actor_rollout_ref.actor.fsdp_config.optimizer_offload="$ACTOR_PARAM_OFFLOAD"
)
ROLLOUT=(
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.n="$GROUP_SIZE"
  actor_rollout_ref.rollout.temperature="$TEMPERATURE"
  actor_rollout_ref.rollout.top_p="$TOP_P"
  actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
  actor_rollout_ref.rollout.gpu_memory_utilization="$GPU_MEMORY_UTILIZATION"
  actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true
  actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="$LOGPROB_TOKENS_PER_GPU"
  actor_rollout_ref.rollout.val_kwargs.n="$VAL_N"
  actor_rollout_ref.rollout.val_kwargs.temperature=0.6
  actor_rollout_ref.rollout.val_kwargs.top_p=0.95
  actor_rollout_ref.rollout.val_kwargs.do_sample=true
)
REF=(
  actor_rollout_ref.ref.log_prob_use_dynamic_bsz=true
  actor_rollout_ref.ref.log_prob_max_token_len_per_gpu="$LOGPROB_TOKENS_PER_GPU"
  actor_rollout_ref.ref.fsdp_config.param_offload="$REF_PARAM_OFFLOAD"
)
ALGORITHM=(
  algorithm.adv_estimator=grpo
  algorithm.norm_adv_by_std_in_grpo=true
  algorithm.use_kl_in_reward=false
)
REWARD=()
if [[ "$ALGO" == dapo ]]; then
  DATA+=(data.gen_batch_size="$GEN_BATCH_SIZE")
  ALGORITHM+=(
    algorithm.filter_groups.enable=true
    algorithm.filter_groups.metric=acc
    algorithm.filter_groups.max_num_gen_batches="$MAX_NUM_GEN_BATCHES"
  )
  REWARD+=(
    reward.reward_manager.name=dapo
    reward.reward_kwargs.overlong_buffer_cfg.enable=true
    reward.reward_kwargs.overlong_buffer_cfg.len="$OVERLONG_BUFFER_LEN"
    reward.reward_kwargs.overlong_buffer_cfg.penalty_factor="$OVERLONG_PENALTY_FACTOR"
  )
fi
if [[ "$RPO" == 1 ]]; then
  RPO_ARGS=(
    rpo.enable=true
    rpo.truncation.mode="$RPO_CUT"
    rpo.truncation.max_new_tokens="$RPO_MAX_NEW_TOKENS"
    rpo.cache.init_path="$RPO_CACHE_INIT"
  )
  case "$RPO_CUT" in
    adaptive) RPO_ARGS+=(rpo.truncation.token_share="$RPO_TOKEN_SHARE") ;;
    verified) RPO_ARGS+=(rpo.cache.store_logprobs=true actor_rollout_ref.rollout.calculate_log_probs=true) ;;
  esac
else
  RPO_ARGS=(rpo.enable=false)
fi
# 1: the old log-prob, reference and update passes compute each group's shared part (prompt + cached prefix) once,
# exact, with the model's own attention (verl's default flash_attention_2; sdpa also served). 0: verl's own passes.
# Default: on for RPO, off for the baseline, which then runs as verl runs it (SHARED_PREFIX=1 shares its prompt).
SHARED_PREFIX=${SHARED_PREFIX:-$RPO}
case "$SHARED_PREFIX" in
  1) RPO_ARGS+=(rpo.shared_prefix=true) ;;
  0) RPO_ARGS+=(rpo.shared_prefix=false) ;;
  *) echo "SHARED_PREFIX must be 1 or 0, got '$SHARED_PREFIX'" >&2; exit 2 ;;
esac
TRAINER=(
  trainer.project_name="$PROJECT_NAME"
  trainer.experiment_name="$EXPERIMENT_NAME"
  trainer.logger="$LOGGER"
  trainer.n_gpus_per_node="$N_GPUS"
  trainer.nnodes="$NNODES"
  trainer.total_epochs="$TOTAL_EPOCHS"
  trainer.total_training_steps="$TOTAL_TRAINING_STEPS"
  trainer.val_before_train=true
  trainer.test_freq="$TEST_FREQ"
  trainer.save_freq="$SAVE_FREQ"
  trainer.max_actor_ckpt_to_keep="$MAX_CKPT_TO_KEEP"
  trainer.resume_mode=auto
  trainer.default_local_dir="$CKPT_ROOT/$PROJECT_NAME/$EXPERIMENT_NAME"
)

tracking "$EXPERIMENT_NAME"
launch "${DATA[@]}" "${MODEL[@]}" "${ACTOR[@]}" "${ROLLOUT[@]}" "${REF[@]}" "${ALGORITHM[@]}" "${REWARD[@]}" \
  "${RPO_ARGS[@]}" "${TRAINER[@]}" "$@"
