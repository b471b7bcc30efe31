"""One RL run of the recipe's trainer per arm and seed, and the shared start (assets and SFT warm-up) they run from.

Each run is ``python -m recipe.rpo.main_rpo --config-name rpo_cpu_tiny`` in its own process (its own Ray cluster,
shut down on exit), identical across arms but for the arm's overrides
(:data:`verl_ext.experiments.learning.arms.ARMS`). The
seed sets the data order, the rollout engine's sampling seed and RPO's truncation RNG; the arms of a seed share all
three. A finished run leaves its overrides and its start (the testbed build and warm-up) next to its metrics, so
``--resume`` reuses it instead of running it again when nothing about it changed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from verl_ext.compare.curves import run_curve
from verl_ext.compare.file_logger import metrics_by_step
from verl_ext.experiments.learning.arms import ARMS
from verl_ext.experiments.learning.curves import diagnostic_steps, run_diagnostics
from verl_ext.experiments.learning.testbed import PROMPT_LENGTH, TESTBED_BUILD, TESTBED_WARMUP

REPO_ROOT = Path(__file__).resolve().parents[3]
RUN_RECORD = "run.json"
# ``--reward``: accuracy alone, or the paper's accuracy + format + cosine length (verl_ext.rewards, 1:1:1).
REWARD_OVERRIDES = {
    "acc": [
        "++reward.custom_reward_function.reward_kwargs.format_weight=0.0",
        "++reward.custom_reward_function.reward_kwargs.cosine_weight=0.0",
    ],
    "paper": [],
}
# ``--lr-schedule``: verl's actor schedulers; ``cosine`` is the paper's (10% warm-up, decay to 0.1x).
LR_SCHEDULE_OVERRIDES = {
    "constant": ["actor_rollout_ref.actor.optim.lr_scheduler_type=constant"],
    "cosine": [
        "actor_rollout_ref.actor.optim.lr_scheduler_type=cosine",
        "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.1",
        "actor_rollout_ref.actor.optim.min_lr_ratio=0.1",
    ],
}


def rl_overrides(args: argparse.Namespace, arm: str, seed: int, run_dir: Path, model_dir: Path) -> list[str]:
    """The recipe config of one run: ``rpo_cpu_tiny`` with the experiment's budget; the arms of a seed differ only
    in the arm's own overrides. The user's overrides come last and win."""
    return [
        f"actor_rollout_ref.model.path={model_dir}",
        f"data.train_max_samples={args.train_prompts}",
        f"data.train_batch_size={args.prompts}",
        f"data.gen_batch_size={args.prompts}",
        f"data.max_prompt_length={PROMPT_LENGTH}",
        f"data.max_response_length={args.response_length}",
        f"data.seed={seed}",
        f"actor_rollout_ref.rollout.n={args.group_size}",
        f"actor_rollout_ref.rollout.seed={seed}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={args.prompts * args.group_size}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={args.prompts * args.group_size}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={args.prompts * args.group_size}",
        f"actor_rollout_ref.actor.optim.lr={args.actor_lr}",
        *LR_SCHEDULE_OVERRIDES[args.lr_schedule],
        # The paper's KL: k3 (verl's low_var_kl) to the frozen start model, in the loss; 0 turns it off.
        f"actor_rollout_ref.actor.use_kl_loss={str(args.kl_coef > 0).lower()}",
        f"actor_rollout_ref.actor.kl_loss_coef={args.kl_coef}",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
        f"actor_rollout_ref.rollout.temperature={args.temperature}",
        f"actor_rollout_ref.rollout.val_kwargs.do_sample={str(args.val_temperature > 0).lower()}",
        f"actor_rollout_ref.rollout.val_kwargs.temperature={args.val_temperature}",
        f"actor_rollout_ref.rollout.val_kwargs.n={args.val_samples}",
        *REWARD_OVERRIDES[args.reward],
        f"rpo.seed={seed}",
        f"rpo.truncation.mode={args.truncation_mode}",
        f"rpo.truncation.max_new_tokens={args.suffix_budget}",
        f"trainer.total_training_steps={args.steps}",
        f"trainer.test_freq={args.test_freq}",
        "trainer.val_before_train=true",
        "trainer.save_freq=-1",
        "trainer.resume_mode=disable",
        "trainer.logger=[console,file]",
        "trainer.project_name=rpo-learning-cpu",
        f"trainer.experiment_name={arm}_seed{seed}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        "+ray_kwargs.ray_init.include_dashboard=false",
        *(override.format(suffix_budget=args.suffix_budget, response_length=args.response_length)
          for override in ARMS[arm].overrides),
        *args.overrides,
    ]


def run_arm(
    args: argparse.Namespace, arm: str, seed: int, assets_dir: Path, model_dir: Path, start: dict[str, Any]
) -> dict[str, Any]:
    """One RL run from the warm model in ``model_dir`` (made as ``start`` says: :func:`start_identity`); returns its
    curve, diagnostics and process time. With ``args.resume``, a finished run of the same overrides and start is
    read back instead of run again."""
    run_dir = Path(args.work_dir) / "runs" / f"{arm}_seed{seed}"
    overrides = rl_overrides(args, arm, seed, run_dir, model_dir)
    previous = finished_run(run_dir, overrides, start, args.steps) if args.resume else None
    if previous is not None:
        print(f"[{time.strftime('%H:%M:%S')}] {ARMS[arm].label}, seed {seed}: reusing {run_dir}", flush=True)
        return previous
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path, log_path, record_path = run_dir / "metrics.jsonl", run_dir / "train.log", run_dir / RUN_RECORD
    for stale in (metrics_path, record_path):
        stale.unlink(missing_ok=True)
    env = {
        **os.environ,
        "VERL_PLATFORM": "cpu",
        "RPO_TINY_DIR": str(assets_dir),
        "VERL_FILE_LOGGER_PATH": str(metrics_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "TOKENIZERS_PARALLELISM": "false",
        "HYDRA_FULL_ERROR": "1",
    }
    command = [sys.executable, "-m", "recipe.rpo.main_rpo", "--config-name", "rpo_cpu_tiny", *overrides]
    print(f"[{time.strftime('%H:%M:%S')}] {ARMS[arm].label}, seed {seed}: log {log_path}", flush=True)
    started = time.monotonic()
    with open(log_path, "w") as log:
        returncode = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    process_s = time.monotonic() - started
    if returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{arm} seed {seed}: the trainer exited with {returncode} (log {log_path}):\n{tail}")
    result = read_run(metrics_path, args.steps, f"{arm} seed {seed}")
    result["process_s"] = process_s
    record_path.write_text(
        json.dumps({"overrides": overrides, "start": start, "process_s": process_s}, indent=2) + "\n"
    )
    end, curve = result["curve"][-1], result["curve"]
    print(
        f"    acc {curve[0]['acc']:.3f} -> {end['acc']:.3f}, training {end['wall_s']:.0f} s, "
        f"{end['generated_tokens']:.0f} generated tokens, process {process_s:.0f} s",
        flush=True,
    )
    return result


def read_run(metrics_path: Path, steps: int, name: str) -> dict[str, Any]:
    """Curve and diagnostics of a run from its file-logger output; a run that did not validate at ``steps`` is an
    error (it stopped early, or ran with other settings)."""
    metric_lines = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    curve = run_curve(metrics_by_step(metric_lines))
    if curve[-1]["step"] != steps:
        raise RuntimeError(
            f"{name}: last validation at step {curve[-1]['step']}, expected {steps} (metrics {metrics_path})"
        )
    return {
        "curve": curve,
        "diagnostics": run_diagnostics(metric_lines),
        "diagnostics_by_step": diagnostic_steps(metric_lines),
        "metrics_path": str(metrics_path),
    }


def finished_run(run_dir: Path, overrides: list[str], start: dict[str, Any], steps: int) -> Optional[dict[str, Any]]:
    """The result of a run in ``run_dir`` that finished with exactly ``overrides`` from the same ``start`` (None for
    any other run: the model path in the overrides stays the same when the testbed changes)."""
    record_path = run_dir / RUN_RECORD
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    if record.get("overrides") != overrides or record.get("start") != start:
        return None
    result = read_run(run_dir / "metrics.jsonl", steps, str(run_dir))
    result["process_s"] = record["process_s"]
    return result


def start_identity(warm: dict[str, Any]) -> dict[str, Any]:
    """What makes two warm starts the same (from :func:`prepare_start`'s record): the build and warm-up parameters."""
    return {"build": warm["build"], "warmup": warm["params"]}


def prepare_start(work_dir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """The testbed's assets and SFT warm-up (:mod:`verl_ext.experiments.learning.testbed`), each reused when already
    current;
    returns the assets directory, the warm model directory and what the start cost."""
    from verl_ext.tiny import ensure_tiny_assets, warmup

    assets_dir = (work_dir / "assets").resolve()
    started = time.monotonic()
    ensure_tiny_assets(assets_dir, **asdict(TESTBED_BUILD))
    reused = warmup.is_current(assets_dir, TESTBED_WARMUP)
    if not reused:
        print(f"[{time.strftime('%H:%M:%S')}] SFT warm-up with verl's SFT trainer ({TESTBED_WARMUP})", flush=True)
        warmup.warm_up(assets_dir, TESTBED_WARMUP)
    info = {
        "build": asdict(TESTBED_BUILD),
        "params": asdict(TESTBED_WARMUP),
        "reused": reused,
        "wall_s": None if reused else time.monotonic() - started,
    }
    return assets_dir, warmup.warm_dir(assets_dir), info
