"""Does RPO learn? RPO arms against full-path GRPO from the same warmed-up model, on CPU, at what cost.

    python scripts/learning_experiment.py [--arms full rpo adaptive ...] [--seeds 0 1 2 3 4] [--other-arm-seeds 3]
        [--resume] [--replot]
    # writes docs/evidence/learning/

1. Start point (shared by every run): the testbed's task and tiny Qwen2 model
(:mod:`verl_ext.experiments.learning.testbed`),
   warmed up with verl's SFT trainer so that it solves part of the problems when it samples. Idempotent.
2. For each seed, one RL run of the recipe's trainer per arm (:mod:`verl_ext.experiments.learning.runner`): the
   headline arms (full path, tail-cut RPO, adaptive) on every seed, the others on the first ``--other-arm-seeds``.
   Arms run one after the other within a seed, so slow drift of the machine's load hits all of them.
3. From verl's file logger: validation accuracy (``val-core/<data_source>/acc/mean@<n>``: all val prompts,
   ``--val-samples`` samples each at ``--val-temperature``, the paper's pass@1-averaged protocol; 8 x 128 answers
   bound one validation's sampling std by 0.016) before training and every ``--test-freq`` steps, against the
   step, the cumulative training wall-clock (sum of ``timing_s/step``: rollout + update; validation and process
   start-up excluded, they are the same for every arm) and the cumulative generated tokens
   (``rpo/generated_tokens``, which every arm logs).

Each arm is compared with the full path under one variance pooled over all runs
(:mod:`verl_ext.experiments.learning.comparison`); per-step diagnostics explain the differences. Writes
``curves.json``, the plots (the frontier among them) and ``summary.md`` into ``--out``
(:mod:`verl_ext.experiments.learning.report`).

The training set is the first ``--train-prompts`` prompts, revisited over the run (``steps * prompts /
train_prompts`` epochs): RPO's cache is seeded in the first epoch (one full answer per prompt) and pays off from the
second, as in the paper's multi-epoch runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from verl_ext.experiments.learning.arms import ARMS, BASELINE, DEFAULT_ARMS, HEADLINE_ARMS
from verl_ext.experiments.learning.report import replot, write_report
from verl_ext.experiments.learning.runner import (
    LR_SCHEDULE_OVERRIDES,
    REPO_ROOT,
    REWARD_OVERRIDES,
    prepare_start,
    run_arm,
    start_identity,
)
from verl_ext.experiments.learning.testbed import RESPONSE_LENGTH, SUFFIX_BUDGET, TESTBED_BUILD
from verl_ext.rollout.truncation import CUT_POLICIES, needs_current_logprobs

DEFAULT_OUT = REPO_ROOT / "docs" / "evidence" / "learning"
DEFAULT_WORK = REPO_ROOT / ".cache" / "learning"


def plain_cut_policies() -> list[str]:
    """The registered cut policies that need nothing but the cache (``--truncation-mode``'s choices)."""
    return sorted(name for name in CUT_POLICIES if not needs_current_logprobs(name))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="the headline arms' seeds")
    parser.add_argument(
        "--other-arm-seeds",
        type=int,
        default=3,
        help=f"arms other than {', '.join(HEADLINE_ARMS)} run on the first this many of --seeds",
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=list(ARMS),
        default=list(DEFAULT_ARMS),
        help=f"arms to run, run in this order within each seed; {BASELINE} is always included",
    )
    parser.add_argument("--steps", type=int, default=16, help="RL steps per run (trainer.total_training_steps)")
    parser.add_argument("--test-freq", type=int, default=16, help="validate every N steps (and before training)")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step (data.train_batch_size)")
    parser.add_argument(
        "--train-prompts",
        type=int,
        default=64,
        help="training prompts (data.train_max_samples); steps * prompts / this = epochs",
    )
    parser.add_argument("--group-size", type=int, default=8, help="G (actor_rollout_ref.rollout.n)")
    parser.add_argument("--response-length", type=int, default=RESPONSE_LENGTH, help="data.max_response_length")
    parser.add_argument("--suffix-budget", type=int, default=SUFFIX_BUDGET, help="rpo.truncation.max_new_tokens")
    parser.add_argument(
        "--truncation-mode",
        choices=plain_cut_policies(),
        default="tail",
        help="rpo.truncation.mode for every RPO arm (policies that read current log-probs, such as "
        "verified, need more settings: they are arms of their own)",
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="rollout sampling temperature")
    parser.add_argument("--val-samples", type=int, default=8, help="samples per val prompt (val_kwargs.n)")
    parser.add_argument("--val-temperature", type=float, default=1.0, help="val sampling temperature (0: greedy)")
    parser.add_argument(
        "--reward",
        choices=sorted(REWARD_OVERRIDES),
        default="acc",
        help="acc: accuracy only; paper: accuracy + format + cosine length",
    )
    parser.add_argument("--actor-lr", type=float, default=1e-4, help="actor_rollout_ref.actor.optim.lr")
    parser.add_argument(
        "--lr-schedule",
        choices=sorted(LR_SCHEDULE_OVERRIDES),
        default="constant",
        help="cosine: the paper's (10%% warm-up, decay to 0.1x the lr)",
    )
    parser.add_argument(
        "--kl-coef", type=float, default=0.04, help="k3 KL to the start model in the loss (the paper's 0.04); 0: none"
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="curves.json, PNG plots and summary.md go here")
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK), help="assets, warm-up and per-run logs")
    parser.add_argument("--replot", action="store_true", help="only redo the summary and plots from OUT/curves.json")
    parser.add_argument(
        "--resume", action="store_true", help="reuse finished runs in WORK_DIR/runs whose overrides are unchanged"
    )
    parser.add_argument("overrides", nargs="*", help="hydra overrides (key=value) for every RL run, applied last")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.test_freq < 1 or args.steps % args.test_freq:
        parser.error(f"--steps ({args.steps}) must be a positive multiple of --test-freq ({args.test_freq})")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    if args.other_arm_seeds < 1:
        parser.error(f"--other-arm-seeds must be >= 1, got {args.other_arm_seeds}")
    if len(set(args.arms)) != len(args.arms):
        parser.error(f"--arms repeats an arm: {args.arms}")
    args.arms = list(dict.fromkeys([BASELINE, *args.arms]))
    args.out, args.work_dir = str(Path(args.out).resolve()), str(Path(args.work_dir).resolve())
    return args


def arm_seeds(args: argparse.Namespace, arm: str) -> list[int]:
    """The seeds ``arm`` runs on: all of ``--seeds`` for the headline arms, the first ``--other-arm-seeds`` else."""
    return list(args.seeds) if arm in HEADLINE_ARMS else list(args.seeds[: args.other_arm_seeds])


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.replot:
        print(replot(Path(args.out)))
        return 0
    from verl_ext.experiments.machine import machine_info

    machine = machine_info("cpu")
    assets_dir, model_dir, warm = prepare_start(Path(args.work_dir))
    start = start_identity(warm)
    details: dict[str, dict[int, dict]] = {arm: {} for arm in args.arms}
    for seed in args.seeds:
        for arm in args.arms:
            if seed in arm_seeds(args, arm):
                details[arm][seed] = run_arm(args, arm, seed, assets_dir, model_dir, start)
    settings = {
        "seeds": args.seeds,
        "other_arm_seeds": args.other_arm_seeds,
        "arms": {arm: list(ARMS[arm].overrides) for arm in args.arms},
        "steps": args.steps,
        "test_freq": args.test_freq,
        "prompts_per_step": args.prompts,
        "train_prompts": args.train_prompts,
        "group_size": args.group_size,
        "response_length": args.response_length,
        "suffix_budget": args.suffix_budget,
        "truncation_mode": args.truncation_mode,
        "actor_lr": args.actor_lr,
        "lr_schedule": args.lr_schedule,
        "kl_coef": args.kl_coef,
        "temperature": args.temperature,
        "reward": args.reward,
        "val_samples": args.val_samples,
        "val_temperature": args.val_temperature,
        "overrides": args.overrides,
        "val_prompts": TESTBED_BUILD.n_val,
        "model": str(model_dir),
        "warmup": warm,
    }
    # What the experiment costs from scratch, also when --resume reused runs: the warm-up (when this call ran it) and
    # every run's process time.
    wall_s = (warm["wall_s"] or 0.0) + sum(run["process_s"] for by_seed in details.values() for run in by_seed.values())
    text = write_report(Path(args.out), details, settings, machine, wall_s)
    print(f"\n{text}\nwrote {args.out}")
    return 0
