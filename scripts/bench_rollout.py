#!/usr/bin/env python
"""Rollout cost of RPO against the full path, measured through the recipe's own trainer and rollout engine.

    python scripts/bench_rollout.py --response-length 2048 --suffix-budget 256 --json OUT.json

One trainer process (verl's TaskRunner with ``RayRPOTrainer``, the FSDP actor and the vLLM rollout server with
prefix caching on, as in training; vLLM's CPU build with ``--device cpu``) runs:

* ``--warmup-steps`` RPO steps that fill the experience cache (step 1 seeds one full answer per prompt), then
* ``--rounds`` counted rounds; a round runs each arm of ``--arms`` once, in order, on the same prompts (the batch is
  the whole data set of ``--prompts`` prompts, so every RPO step is all cache hits).

Arms (:data:`ARMS`): ``rpo`` (RPO with ``rpo.shared_prefix=true``), ``full`` (the full path as verl runs it:
``rpo.enable=false``, ``rpo.shared_prefix=false``, the baseline of every ratio), ``full_shared`` (the full path with
the shared prompt computed once per group), ``rpo_unshared`` (RPO with verl's own training passes),
``rpo_verified`` (RPO with ``rpo.truncation.mode=verified``; the run then keeps behaviour log-probs in the cache and
reports ``rpo/verify_s``). A full-path step
is the trainer's own ``rpo.enable=false`` branch (G full answers per prompt through verl's ``single_turn_agent``); an
RPO step is ``PartialRollout`` (G suffixes of at most ``--suffix-budget`` tokens after a cut of the cached answer).
Every step then trains as usual, so the model drifts the same way for all arms and the whole-step time is real.
Each step logs ``bench/arm`` (its index in :data:`ARMS`) and ``bench/warmup``. Reported per step: generated tokens
(``rpo/generated_tokens``), rollout seconds (``timing_s/gen``), old log-prob and update seconds, whole-step seconds
(``timing_s/step``); per round each arm's ratios to ``full``, and their min/median/max. The headline
``step_time_ratio`` is ``rpo`` against ``full``.

``--answers budget`` (default) sets the rollout's ``ignore_eos``: every answer runs to its token budget, the regime
of long reasoning answers the paper targets (a random tiny model would otherwise stop after a few hundred tokens:
its EOS probability is about 1/vocab per token). ``--answers natural`` lets the model stop at EOS.

Time goes to (per step, in the JSON records): the engine round trip (``engine_call_s``: the agent-loop workers,
vLLM, streamed reward scoring, Ray transfers), inside it the slowest request's generate time
(``agent_loop/generate_sequences/max``) and reward scoring; the rest of ``timing_s/gen`` is driver-side work
(batch assembly, reward extraction, cache update).

Only the pure helpers (step plan, rounds, ratio statistics, summary, table) are importable without verl; the run
itself imports verl after selecting the platform.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TINY_DIR = REPO_ROOT / ".cache" / "bench_tiny"

# Metric names (verl's and the recipe's) read back from verl's file logger.
ARM_METRIC = "bench/arm"
WARMUP_METRIC = "bench/warmup"
ENGINE_CALL_METRIC = "bench/engine_call_s"
CONTEXT_METRIC = "bench/context_tokens"
CACHED_METRIC = "bench/cached_context_tokens"
TOKENS_METRIC = "rpo/generated_tokens"
GEN_TIME_METRIC = "timing_s/gen"
STEP_TIME_METRIC = "timing_s/step"

# Step record field -> metric; the first three are the benchmark's quantities, the rest explain where time goes.
RECORD_METRICS = {
    "generated_tokens": TOKENS_METRIC,
    "rollout_s": GEN_TIME_METRIC,
    "step_s": STEP_TIME_METRIC,
    "engine_call_s": ENGINE_CALL_METRIC,
    "engine_calls": "bench/engine_calls",
    "slowest_request_s": "timing_s/agent_loop/generate_sequences/max",
    "mean_request_s": "timing_s/agent_loop/generate_sequences/mean",
    "reward_max_s": "timing_s/agent_loop/compute_score/max",
    "reward_mean_s": "timing_s/agent_loop/compute_score/mean",
    "old_log_prob_s": "timing_s/old_log_prob",
    "ref_s": "timing_s/ref",
    "adv_s": "timing_s/adv",
    "update_actor_s": "timing_s/update_actor",
    "update_weights_s": "timing_s/update_weights",
    "response_length_mean": "response_length/mean",
    "suffix_len_mean": "rpo/suffix_len_mean",
    "suffix_len_max": "rpo/suffix_len_max",
    "prefix_len_mean": "rpo/prefix_len_mean",
    "context_tokens": CONTEXT_METRIC,
    "cached_context_tokens": CACHED_METRIC,
    "prefix_cache_hit_rate": "bench/prefix_cache_hit_rate",
    "seed_count": "rpo/seed_count",
    "cache_hit_rate": "rpo/cache_hit_rate",
    "verify_s": "rpo/verify_s",
    "verify_accept_rate": "rpo/verify_accept_rate",
    "packed_token_frac_update": "rpo/shared_prefix/packed_token_frac/update",
    "packed_token_frac_old_log_prob": "rpo/shared_prefix/packed_token_frac/old_log_prob",
    "packed_token_frac_ref": "rpo/shared_prefix/packed_token_frac/ref",
    "whole_group_packed_frac": "rpo/shared_prefix/whole_group_packed_token_frac",
    "split_groups": "rpo/shared_prefix/split_groups",
}
PACKING_FIELDS = ("packed_token_frac_update", "packed_token_frac_old_log_prob", "packed_token_frac_ref",
                  "whole_group_packed_frac", "split_groups")



class Arm(NamedTuple):
    """What one benchmark step runs: RPO or the full path, whether the training passes share prefixes, and how they
    form micro-batches."""

    rpo: bool
    shared_prefix: bool
    verified: bool = False
    """RPO with ``rpo.truncation.mode=verified`` instead of ``--truncation-mode``."""
    dynamic_bsz: bool = True
    """Dynamic batch size (the run's token budgets, as scripts/repro); False: ``--micro-batch-size`` rows."""
    baseline: str = "full"
    """The arm whose value is the denominator of this arm's ratios (the full path with the same micro-batching)."""


ARMS: dict[str, Arm] = {
    "rpo": Arm(rpo=True, shared_prefix=True),
    "full": Arm(rpo=False, shared_prefix=False),
    "full_shared": Arm(rpo=False, shared_prefix=True),
    "rpo_unshared": Arm(rpo=True, shared_prefix=False),
    "rpo_verified": Arm(rpo=True, shared_prefix=True, verified=True),
    "rpo_static": Arm(rpo=True, shared_prefix=True, dynamic_bsz=False, baseline="full_static"),
    "full_static": Arm(rpo=False, shared_prefix=False, dynamic_bsz=False, baseline="full_static"),
}
DEFAULT_ARMS = ("rpo", "full", "full_shared")
BASELINE_ARM = "full"
"""The denominator of the default arms' ratios: the full path as verl runs it (``*_static`` arms: ``full_static``)."""

# Ratio name -> record field (arm value / baseline value per round). For the ``rpo`` arm the names are the
# top-level keys of the JSON; other arms' ratios are prefixed with the arm's name.
RATIOS = {
    "generated_token_ratio": "generated_tokens",
    "rollout_time_ratio": "rollout_s",
    "step_time_ratio": "step_s",
    "old_log_prob_ratio": "old_log_prob_s",
    "update_actor_ratio": "update_actor_s",
}


def ratio_name(arm: str, name: str) -> str:
    return name if arm == "rpo" else f"{arm}/{name}"


# ---------------------------------------------------------------------------------------------------- pure helpers


def step_plan(step: int, warmup_steps: int, arms: Sequence[str] = DEFAULT_ARMS) -> tuple[str, str]:
    """(phase, arm) of 1-based training step ``step``: warm-up steps run ``rpo`` (they fill the cache); counted steps
    cycle through ``arms``, so counted steps ``k*len(arms)+1 .. (k+1)*len(arms)`` form round k+1."""
    if step < 1:
        raise ValueError(f"steps are 1-based, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if step <= warmup_steps:
        return "warmup", "rpo"
    return "counted", arms[(step - warmup_steps - 1) % len(arms)]


def total_steps(warmup_steps: int, rounds: int, arms: Sequence[str] = DEFAULT_ARMS) -> int:
    return warmup_steps + len(arms) * rounds


def step_records(metric_lines: Iterable[dict]) -> list[dict]:
    """One record per training step from verl's file-logger lines (``{"step": n, "data": {...}}``): the step's arm
    and phase from ``bench/*`` and the fields of :data:`RECORD_METRICS` (None when not logged)."""
    by_step: dict[int, dict] = {}
    for line in metric_lines:
        data = line.get("data", {})
        if "training/global_step" not in data or ARM_METRIC not in data:
            continue
        by_step[int(line["step"])] = data  # the last record of a step wins
    names = list(ARMS)
    records = []
    for step in sorted(by_step):
        data = by_step[step]
        record: dict[str, Any] = {
            "step": step,
            "phase": "warmup" if data.get(WARMUP_METRIC) else "counted",
            "arm": names[int(data[ARM_METRIC])],
        }
        for field, metric in RECORD_METRICS.items():
            value = data.get(metric)
            record[field] = None if value is None else float(value)
        records.append(record)
    return records


def round_steps(records: Sequence[dict], arms: Sequence[str]) -> list[dict[str, dict]]:
    """The counted steps in rounds of ``len(arms)`` in step order, each as {arm: record}. A trailing incomplete
    round (a run cut short) is dropped; a round that does not hold each arm once means the plan was not followed."""
    counted = sorted((r for r in records if r["phase"] == "counted"), key=lambda r: r["step"])
    rounds = []
    for start in range(0, len(counted) - len(arms) + 1, len(arms)):
        chunk = counted[start:start + len(arms)]
        if sorted(r["arm"] for r in chunk) != sorted(arms):
            raise ValueError(f"steps {[r['step'] for r in chunk]} are arms {[r['arm'] for r in chunk]}: not a round "
                             f"of {list(arms)}")
        rounds.append({r["arm"]: r for r in chunk})
    return rounds


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return float(numerator) / float(denominator)


def ratio_stats(values: Sequence[Optional[float]]) -> dict[str, Any]:
    """min / median / max over the defined values (None where none is)."""
    defined = [float(v) for v in values if v is not None]
    if not defined:
        return {"min": None, "median": None, "max": None, "n": 0}
    return {"min": min(defined), "median": statistics.median(defined), "max": max(defined), "n": len(defined)}


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    defined = [float(v) for v in values if v is not None]
    return statistics.fmean(defined) if defined else None


def time_breakdown(records: Sequence[dict]) -> dict[str, dict[str, Optional[float]]]:
    """Mean seconds per counted step, by arm, of where the time goes: the engine round trip and, inside it, the
    slowest request's generate time and reward scoring; the driver-side remainder of ``timing_s/gen``; the
    training passes."""
    result = {}
    for arm in ARMS:
        rows = [r for r in records if r["phase"] == "counted" and r["arm"] == arm]
        if not rows:
            continue
        rollout = _mean(r["rollout_s"] for r in rows)
        engine = _mean(r["engine_call_s"] for r in rows)
        slowest = _mean(r["slowest_request_s"] for r in rows)
        result[arm] = {
            "rollout_s": rollout,
            "engine_call_s": engine,
            "slowest_request_s": slowest,
            "reward_max_s": _mean(r["reward_max_s"] for r in rows),
            "context_tokens": _mean(r["context_tokens"] for r in rows),
            "prefix_cache_hit_rate": _mean(r["prefix_cache_hit_rate"] for r in rows),
            "engine_call_minus_slowest_request_s": None if engine is None or slowest is None else engine - slowest,
            "driver_side_s": None if rollout is None or engine is None else rollout - engine,
            "step_s": _mean(r["step_s"] for r in rows),
            "old_log_prob_s": _mean(r["old_log_prob_s"] for r in rows),
            "ref_s": _mean(r["ref_s"] for r in rows),
            "update_actor_s": _mean(r["update_actor_s"] for r in rows),
            "update_weights_s": _mean(r["update_weights_s"] for r in rows),
            "verify_s": _mean(r["verify_s"] for r in rows),
            **{field: _mean(r.get(field) for r in rows) for field in PACKING_FIELDS},
        }
    return result


def summarize(records: Sequence[dict], settings: dict, machine: dict, wall_s: Optional[float] = None,
              arms: Sequence[str] = DEFAULT_ARMS) -> dict:
    """The benchmark's JSON: the medians over the counted rounds of each arm's ratios to ``full`` (``rpo``'s as
    top-level keys: ``generated_token_ratio``, ``rollout_time_ratio``, ``step_time_ratio``, ``old_log_prob_ratio``,
    ``update_actor_ratio``; other arms' as ``<arm>/<ratio>``), ``rounds``, min/median/max of each ratio
    (``ratio_stats``), the per-round values, every step record, the time breakdown, the settings and the machine."""
    rounds = round_steps(records, arms)
    round_rows = []
    for index, by_arm in enumerate(rounds, start=1):
        row: dict[str, Any] = {"round": index, "steps": {arm: r["step"] for arm, r in by_arm.items()}}
        for arm, record in by_arm.items():
            baseline = ARMS[arm].baseline
            if arm != baseline:
                row.update({ratio_name(arm, name): ratio(record[field], by_arm[baseline][field])
                            for name, field in RATIOS.items()})
        round_rows.append(row)
    names = [ratio_name(arm, name) for arm in arms if arm != ARMS[arm].baseline for name in RATIOS]
    stats = {name: ratio_stats([row.get(name) for row in round_rows]) for name in names}
    return {
        **{name: stats[name]["median"] for name in names},
        "arms": list(arms),
        "rounds": len(rounds),
        "ratio_stats": stats,
        "round_ratios": round_rows,
        "steps": list(records),
        "time_breakdown": time_breakdown(records),
        "settings": settings,
        "machine": machine,
        "wall_s": wall_s,
    }


def _fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and digits == 0:
        return str(int(value))
    return f"{value:.{digits}f}"


def markdown_table(summary: dict) -> str:
    """Per-step table and each ratio's min/median/max over the rounds, as markdown."""
    settings = summary.get("settings", {})
    lines = []
    if settings:
        lines.append(
            f"arms {', '.join(summary.get('arms', []))}: model {settings.get('model')}, "
            f"response budget {settings.get('response_length')}, "
            f"suffix budget {settings.get('suffix_budget')}, {settings.get('prompts')} prompts x G="
            f"{settings.get('group_size')}, answers: {settings.get('answers')}, device {settings.get('device')}"
        )
        lines.append("")
    lines += [
        "| step | phase | arm | generated tokens | rollout s | old log-prob s | update s | step s | slowest request s "
        "| prefix-cache hit |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary["steps"]:
        lines.append(
            f"| {r['step']} | {r['phase']} | {r['arm']} | {_fmt(r['generated_tokens'], 0)} | {_fmt(r['rollout_s'])} "
            f"| {_fmt(r['old_log_prob_s'])} | {_fmt(r['update_actor_s'])} | {_fmt(r['step_s'])} "
            f"| {_fmt(r['slowest_request_s'])} | {_fmt(r.get('prefix_cache_hit_rate'))} |"
        )
    lines += ["", "| ratio (arm / its full-path baseline) | min | median | max |", "|---|---:|---:|---:|"]
    for name, s in summary["ratio_stats"].items():
        lines.append(f"| {name} | {_fmt(s['min'], 3)} | {_fmt(s['median'], 3)} | {_fmt(s['max'], 3)} |")
    lines.append("")
    lines.append(f"rounds counted: {summary['rounds']}" + (
        f", wall time {summary['wall_s']:.0f} s" if summary.get("wall_s") is not None else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- command line


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="RPO vs full-path rollout cost through the recipe's trainer (alternating steps, one process).",
        epilog="Trailing key=value arguments are hydra overrides of the recipe config, applied last.",
    )
    parser.add_argument("--response-length", type=int, default=1024, help="response budget R (data.max_response_length)")
    parser.add_argument("--suffix-budget", type=int, default=128, help="rpo.truncation.max_new_tokens")
    parser.add_argument("--group-size", type=int, default=4, help="G (actor_rollout_ref.rollout.n)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step; also the data set size")
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds (each arm once per round)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(DEFAULT_ARMS),
                        help=f"arms of a round; must include {BASELINE_ARM}")
    parser.add_argument("--warmup-steps", type=int, default=1, help="RPO steps before counting (the first seeds)")
    parser.add_argument("--max-prompt-length", type=int, default=64, help="data.max_prompt_length")
    parser.add_argument("--truncation-mode", choices=["tail", "uniform"], default="tail", help="rpo.truncation.mode")
    parser.add_argument(
        "--answers", choices=["budget", "natural"], default="budget",
        help="budget: rollout ignore_eos, every answer runs to its budget (long answers); natural: stop at EOS",
    )
    parser.add_argument("--model", default=None, help="HF model directory (default: the random tiny model)")
    parser.add_argument("--train-file", default=None, help="RL parquet (default: the tiny arithmetic data)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--gpus", type=int, default=1,
                        help="trainer.n_gpus_per_node: data-parallel actor ranks and rollout replicas (on CPU too)")
    parser.add_argument("--token-budget-factor", type=float, default=6.0,
                        help="dynamic batch size: update tokens per GPU = factor x (max prompt + response), "
                             "log-prob passes twice that (scripts/repro: 6 for 1.5B, 4 for 7B)")
    parser.add_argument("--micro-batch-size", type=int, default=8,
                        help="*_static arms: rows per micro-batch and GPU in all three passes (the CPU config's 8)")
    parser.add_argument("--tiny-dir", default=str(DEFAULT_TINY_DIR), help="where the tiny model and data are built")
    parser.add_argument("--work-dir", default=None, help="metrics, checkpoints dir (default: a temporary directory)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the summary here")
    parser.add_argument("overrides", nargs="*", help="hydra overrides (key=value), applied last")
    args = parser.parse_args(argv)
    for name in ("response_length", "suffix_budget", "group_size", "prompts", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if len(set(args.arms)) != len(args.arms) or any(ARMS[arm].baseline not in args.arms for arm in args.arms):
        parser.error(f"--arms must name each arm once and each arm's baseline ({BASELINE_ARM}; full_static for the "
                     f"*_static arms), got {args.arms}")
    if args.warmup_steps < 1:
        parser.error("--warmup-steps must be >= 1 (the first step seeds the cache)")
    if args.suffix_budget >= args.response_length:
        parser.error("--suffix-budget must be smaller than --response-length")
    if args.gpus < 1 or args.token_budget_factor < 1 or args.micro_batch_size < 1:
        parser.error("--gpus, --token-budget-factor and --micro-batch-size must be >= 1")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides must be key=value: {bad}")
    # The run changes to the repository root (Ray workers import recipe.rpo from there): resolve paths first.
    for name in ("model", "train_file", "tiny_dir", "work_dir", "json_path"):
        value = getattr(args, name)
        if value is not None and not (name == "model" and not Path(value).exists()):
            setattr(args, name, str(Path(value).expanduser().resolve()))
    return args


def tiny_max_positions(context: int) -> int:
    """Context length of the benchmark's tiny build: at least 8192 (one build serves budgets up to ~8k), else the
    needed context rounded up to a multiple of 1024."""
    return max(8192, -(-context // 1024) * 1024)


def recipe_overrides(args: argparse.Namespace, model: str, train_file: str, work_dir: Path) -> list[str]:
    """The recipe config for the benchmark: one batch = the whole data set (every RPO step is all cache hits), no
    validation or checkpoints, verl's file logger; the user's overrides come last and win."""
    steps = total_steps(args.warmup_steps, args.rounds, args.arms)
    context = args.max_prompt_length + args.response_length
    overrides = [
        f"data.train_files={train_file}",
        f"data.val_files={train_file}",
        f"data.train_max_samples={args.prompts}",
        f"data.val_max_samples={args.prompts}",
        f"data.train_batch_size={args.prompts}",
        f"data.gen_batch_size={args.prompts}",
        f"data.max_prompt_length={args.max_prompt_length}",
        f"data.max_response_length={args.response_length}",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.n={args.group_size}",
        f"actor_rollout_ref.rollout.max_model_len={context}",
        "actor_rollout_ref.rollout.enable_prefix_caching=true",
        f"actor_rollout_ref.rollout.ignore_eos={str(args.answers == 'budget').lower()}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts}",
        "rpo.enable=true",
        f"rpo.truncation.mode={args.truncation_mode}",
        f"rpo.truncation.max_new_tokens={args.suffix_budget}",
        "algorithm.filter_groups.enable=false",
        f"trainer.total_training_steps={steps}",
        f"trainer.total_epochs={steps}",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.resume_mode=disable",
        "trainer.logger=[console,file]",
        "trainer.project_name=bench-rollout",
        "trainer.experiment_name=bench_rollout",
        f"trainer.default_local_dir={work_dir / 'checkpoints'}",
        # Ray's dashboard is a few processes of its own: only noise on a small CPU machine.
        "+ray_kwargs.ray_init.include_dashboard=false",
    ]
    if any(ARMS[arm].verified for arm in args.arms):
        overrides += ["rpo.cache.store_logprobs=true", "actor_rollout_ref.rollout.calculate_log_probs=true"]
    overrides += [f"trainer.n_gpus_per_node={args.gpus}"] + batching_overrides(args)
    if args.device == "cuda":
        overrides += ["trainer.device=cuda", "actor_rollout_ref.rollout.tensor_model_parallel_size=1"]
    return overrides + list(args.overrides)


def batching_overrides(args: argparse.Namespace) -> list[str]:
    """The training passes' micro-batching: dynamic batch size with scripts/repro's token budgets (the ``*_static``
    arms switch each step to fixed micro-batches, :func:`static_batching`)."""
    actor, rollout, ref = "actor_rollout_ref.actor", "actor_rollout_ref.rollout", "actor_rollout_ref.ref"
    update = int(args.token_budget_factor * (args.max_prompt_length + args.response_length))
    return [f"{actor}.use_dynamic_bsz=true", f"{rollout}.log_prob_use_dynamic_bsz=true",
            f"{ref}.log_prob_use_dynamic_bsz=true", f"{actor}.ppo_max_token_len_per_gpu={update}",
            f"{rollout}.log_prob_max_token_len_per_gpu={2 * update}",
            f"{ref}.log_prob_max_token_len_per_gpu={2 * update}"]


def static_batching(micro_batch_size: int) -> dict[str, Any]:
    """What a ``*_static`` step puts in its batch's meta-info: verl's workers take ``use_dynamic_bsz`` and
    ``micro_batch_size_per_gpu`` from the batch when it carries them (``TrainingWorker.train_batch`` and
    ``infer_batch`` fill in only what is missing), so every training pass of the step runs fixed micro-batches."""
    return {"use_dynamic_bsz": False, "micro_batch_size_per_gpu": micro_batch_size}


# ---------------------------------------------------------------------------------------------------- the run


def prefix_cache_metrics(batch: Any) -> dict[str, float]:
    """Context tokens the engine was sent (prompt + cached prefix, summed over the rows of the batch's last
    generation call) and how many of them vLLM's prefix cache served (verl's ``num_cached_tokens`` per request)."""
    import numpy as np

    prompt_width = batch.batch["prompts"].shape[-1]
    prompt_lens = batch.batch["attention_mask"][:, :prompt_width].sum(-1).cpu().numpy().astype(np.int64)
    prefix_lens = np.asarray(batch.non_tensor_batch.get("rpo_prefix_len", np.zeros(len(batch))), dtype=np.int64)
    context = int((prompt_lens + prefix_lens).sum())
    result = {CONTEXT_METRIC: float(context)}
    cached = batch.non_tensor_batch.get("num_cached_tokens")
    if cached is not None and all(value is not None for value in cached):
        result[CACHED_METRIC] = float(np.sum(np.asarray(cached, dtype=np.int64)))
        result["bench/prefix_cache_hit_rate"] = result[CACHED_METRIC] / context if context else 0.0
    return result


def _bench_classes():
    """The trainer and TaskRunner subclasses (defined here, after verl is importable with the right platform)."""
    from recipe.rpo.main_rpo import RPOTaskRunner
    from recipe.rpo.rpo_ray_trainer import RayRPOTrainer
    from verl_ext.shared_prefix.rank_balance import GROUPS_ANY_COUNT, VERL_ROWS

    class _TimedManager:
        """The agent-loop manager with the wall time of each ``generate_sequences`` round trip recorded."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner
            self.calls: list[float] = []

        def generate_sequences(self, prompts: Any) -> Any:
            start = time.perf_counter()
            try:
                return self._inner.generate_sequences(prompts)
            finally:
                self.calls.append(time.perf_counter() - start)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    class BenchRPOTrainer(RayRPOTrainer):
        """RayRPOTrainer whose steps follow :func:`step_plan`: RPO while warming up, then the arms in turn.

        A full-path step hides ``partial_rollout`` for the whole step (rollout, metrics, update), so it runs exactly
        the trainer's ``rpo.enable=false`` branch and leaves the cache untouched; the arm's ``shared_prefix`` is set
        for the step's training passes (and the group-keeping rank balancing with it)."""

        def init_workers(self) -> None:
            super().init_workers()
            self.async_rollout_manager = _TimedManager(self.async_rollout_manager)
            self._bench_state = (self.partial_rollout, self.rpo, self.rank_balancing)

        def _restore(self) -> None:
            self.partial_rollout, self.rpo, self.rank_balancing = self._bench_state
            if self.partial_rollout is not None:
                self.partial_rollout.config = self.rpo

        def _collect_batch(self, batches, metrics, timing_raw, profile_rollout=False):
            bench = self.config.bench
            phase, arm_name = step_plan(self.global_steps, int(bench.warmup_steps), list(bench.arms))
            arm = ARMS[arm_name]
            self._bench_arm = arm_name
            truncation = self._bench_state[1].truncation
            if arm.verified:
                truncation = dataclasses.replace(truncation, mode="verified")
            self.rpo = dataclasses.replace(self.rpo, shared_prefix=arm.shared_prefix, truncation=truncation)
            if self.partial_rollout is not None:
                self.partial_rollout.config = self.rpo
            if not arm.rpo:
                self.partial_rollout = None
            self.rank_balancing = GROUPS_ANY_COUNT if arm.shared_prefix else VERL_ROWS
            manager = self.async_rollout_manager
            manager.calls.clear()
            try:
                batch = super()._collect_batch(batches, metrics, timing_raw, profile_rollout)
            except BaseException:
                self._restore()
                raise
            metrics[ARM_METRIC] = list(ARMS).index(arm_name)
            metrics[WARMUP_METRIC] = int(phase == "warmup")
            metrics[ENGINE_CALL_METRIC] = float(sum(manager.calls))
            metrics["bench/engine_calls"] = len(manager.calls)
            if batch is not None:
                metrics.update(prefix_cache_metrics(batch))
            print(f"bench: step {self.global_steps} {phase} {arm_name}: "
                  f"{metrics.get(TOKENS_METRIC)} generated tokens, gen {timing_raw.get('gen', float('nan')):.2f} s")
            return batch

        def _update_policy(self, batch, metrics, timing_raw, is_last_step):
            if not ARMS[self._bench_arm].dynamic_bsz:
                batch.meta_info.update(static_batching(int(self.config.bench.micro_batch_size)))
            try:
                return super()._update_policy(batch, metrics, timing_raw, is_last_step)
            finally:
                self._restore()

    class BenchTaskRunner(RPOTaskRunner):
        trainer_cls = BenchRPOTrainer

    return BenchTaskRunner


def run_benchmark(args: argparse.Namespace) -> dict:
    started = time.monotonic()
    from verl_ext.machine import machine_info

    machine = machine_info(args.device)
    context = args.max_prompt_length + args.response_length
    if args.model is None or args.train_file is None:
        from verl_ext.tiny import ensure_tiny_assets

        assets = ensure_tiny_assets(args.tiny_dir, max_positions=tiny_max_positions(context))
        model = args.model or str(assets.model_dir)
        train_file = args.train_file or str(assets.train_path)
    else:
        model, train_file = args.model, args.train_file

    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_rollout_")).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = work_dir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)

    # verl picks its platform at import time; Ray workers inherit this environment (ray.init starts here).
    os.environ["VERL_FILE_LOGGER_PATH"] = str(metrics_path)
    os.environ.setdefault("RPO_TINY_DIR", str(Path(args.tiny_dir).resolve()))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.device == "cpu":
        os.environ["VERL_PLATFORM"] = "cpu"
    elif os.environ.get("VERL_PLATFORM") == "cpu":
        raise SystemExit("--device cuda with VERL_PLATFORM=cpu in the environment: unset it")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    os.chdir(REPO_ROOT)

    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    overrides = recipe_overrides(args, model, train_file, work_dir)
    config_name = "rpo_cpu_tiny" if args.device == "cpu" else "rpo_trainer"
    with initialize_config_dir(config_dir=str(REPO_ROOT / "recipe" / "rpo" / "config"), version_base=None):
        config = compose(config_name=config_name, overrides=overrides)
    with open_dict(config):
        config.bench = {"warmup_steps": args.warmup_steps, "rounds": args.rounds, "arms": list(args.arms),
                        "micro_batch_size": args.micro_batch_size}

    import ray

    from recipe.rpo.main_rpo import run_rpo

    runner_cls = _bench_classes()
    try:
        run_rpo(config, task_runner_cls=runner_cls)
    finally:
        if ray.is_initialized():
            ray.shutdown()

    lines = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    records = step_records(lines)
    settings = {
        "model": model,
        "train_file": train_file,
        "device": args.device,
        "response_length": args.response_length,
        "suffix_budget": args.suffix_budget,
        "group_size": args.group_size,
        "prompts": args.prompts,
        "rounds_requested": args.rounds,
        "arms": list(args.arms),
        "warmup_steps": args.warmup_steps,
        "max_prompt_length": args.max_prompt_length,
        "truncation_mode": args.truncation_mode,
        "answers": args.answers,
        "ignore_eos": args.answers == "budget",
        "prefix_caching": bool(config.actor_rollout_ref.rollout.enable_prefix_caching),
        "config_name": config_name,
        "overrides": overrides,
        "metrics_path": str(metrics_path),
    }
    return summarize(records, settings, machine, wall_s=time.monotonic() - started, arms=args.arms)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    summary = run_benchmark(args)
    table = markdown_table(summary)
    print("\n" + table)
    if args.json_path:
        out = Path(args.json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"\nwrote {out}")
    if summary["rounds"] < 1:
        print("no counted round: see the metrics file", summary["settings"]["metrics_path"])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
