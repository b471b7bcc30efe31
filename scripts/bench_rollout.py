#!/usr/bin/env python
"""Rollout cost of RPO against the full path, measured through the recipe's own trainer and rollout engine.

    python scripts/bench_rollout.py --response-length 2048 --suffix-budget 256 --json OUT.json

One trainer process (verl's TaskRunner with ``RayRPOTrainer``, the FSDP actor and the vLLM rollout server with
prefix caching on, as in training; vLLM's CPU build with ``--device cpu``) runs:

* ``--warmup-steps`` RPO steps that fill the experience cache (step 1 seeds one full answer per prompt), then
* ``2 * --pairs`` counted steps that alternate RPO, full path, RPO, full path, ... on the same prompts (the
  batch is the whole data set of ``--prompts`` prompts, so every RPO step is all cache hits).

A full-path step is the trainer's own ``rpo.enable=false`` branch (G full answers per prompt through verl's
``single_turn_agent``); an RPO step is ``PartialRollout`` (G suffixes of at most ``--suffix-budget`` tokens after a
cut of the cached answer). Both steps then train as usual, so the model drifts the same way for both and the
whole-step time is real. Each step logs ``bench/rpo`` (1: RPO, 0: full path) and ``bench/warmup``; the counted steps
pair up as (RPO, full) in order. Reported per step: generated tokens (``rpo/generated_tokens``), rollout seconds
(``timing_s/gen``), whole-step seconds (``timing_s/step``); per pair the RPO/full-path ratios, and their
min/median/max.

``--answers budget`` (default) sets the rollout's ``ignore_eos``: every answer runs to its token budget, the regime
of long reasoning answers the paper targets (a random tiny model would otherwise stop after a few hundred tokens:
its EOS probability is about 1/vocab per token). ``--answers natural`` lets the model stop at EOS.

Time goes to (per step, in the JSON records): the engine round trip (``engine_call_s``: the agent-loop workers,
vLLM, streamed reward scoring, Ray transfers), inside it the slowest request's generate time
(``agent_loop/generate_sequences/max``) and reward scoring; the rest of ``timing_s/gen`` is driver-side work
(batch assembly, reward extraction, cache update).

Only the pure helpers (step plan, pairing, ratio statistics, summary, table) are importable without verl; the run
itself imports verl after selecting the platform.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TINY_DIR = REPO_ROOT / ".cache" / "bench_tiny"

# Metric names (verl's and the recipe's) read back from verl's file logger.
MODE_METRIC = "bench/rpo"
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
}

# Ratio name -> record field (RPO value / full-path value per pair).
RATIOS = {
    "generated_token_ratio": "generated_tokens",
    "rollout_time_ratio": "rollout_s",
    "step_time_ratio": "step_s",
}


# ---------------------------------------------------------------------------------------------------- pure helpers


def step_plan(step: int, warmup_steps: int) -> tuple[str, bool]:
    """(phase, rpo) of 1-based training step ``step``: warm-up steps run RPO (they fill the cache); counted steps
    alternate RPO (odd counted index) and full path (even), so counted steps 2k-1 and 2k form pair k."""
    if step < 1:
        raise ValueError(f"steps are 1-based, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if step <= warmup_steps:
        return "warmup", True
    return "counted", (step - warmup_steps) % 2 == 1


def total_steps(warmup_steps: int, pairs: int) -> int:
    return warmup_steps + 2 * pairs


def step_records(metric_lines: Iterable[dict]) -> list[dict]:
    """One record per training step from verl's file-logger lines (``{"step": n, "data": {...}}``): the step's mode
    and phase from ``bench/*`` and the fields of :data:`RECORD_METRICS` (None when not logged)."""
    by_step: dict[int, dict] = {}
    for line in metric_lines:
        data = line.get("data", {})
        if "training/global_step" not in data or MODE_METRIC not in data:
            continue
        by_step[int(line["step"])] = data  # the last record of a step wins
    records = []
    for step in sorted(by_step):
        data = by_step[step]
        record: dict[str, Any] = {
            "step": step,
            "phase": "warmup" if data.get(WARMUP_METRIC) else "counted",
            "mode": "rpo" if data[MODE_METRIC] else "full",
        }
        for field, metric in RECORD_METRICS.items():
            value = data.get(metric)
            record[field] = None if value is None else float(value)
        records.append(record)
    return records


def pair_steps(records: Sequence[dict]) -> list[tuple[dict, dict]]:
    """(rpo, full) pairs of the counted steps, taken two by two in step order. A trailing unpaired step (a run cut
    short) is dropped; two steps of the same mode in one pair mean the plan was not followed and raise."""
    counted = sorted((r for r in records if r["phase"] == "counted"), key=lambda r: r["step"])
    pairs = []
    for first, second in zip(counted[0::2], counted[1::2]):
        modes = {first["mode"], second["mode"]}
        if modes != {"rpo", "full"}:
            raise ValueError(f"steps {first['step']} and {second['step']} are both {first['mode']}: not an A/B pair")
        pairs.append((first, second) if first["mode"] == "rpo" else (second, first))
    return pairs


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
    """Mean seconds per counted step, by mode, of where the rollout time goes: the engine round trip and, inside it,
    the slowest request's generate time and reward scoring; the driver-side remainder of ``timing_s/gen``."""
    result = {}
    for mode in ("rpo", "full"):
        rows = [r for r in records if r["phase"] == "counted" and r["mode"] == mode]
        if not rows:
            continue
        rollout = _mean(r["rollout_s"] for r in rows)
        engine = _mean(r["engine_call_s"] for r in rows)
        slowest = _mean(r["slowest_request_s"] for r in rows)
        result[mode] = {
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
            "update_actor_s": _mean(r["update_actor_s"] for r in rows),
            "update_weights_s": _mean(r["update_weights_s"] for r in rows),
        }
    return result


def summarize(records: Sequence[dict], settings: dict, machine: dict, wall_s: Optional[float] = None) -> dict:
    """The benchmark's JSON: the medians of the RPO/full-path ratios over the counted pairs as top-level keys
    (``generated_token_ratio``, ``rollout_time_ratio``, ``step_time_ratio``), ``pairs``, min/median/max of each ratio
    (``ratio_stats``), the per-pair values, every step record, the time breakdown, the settings and the machine."""
    pairs = pair_steps(records)
    pair_rows = []
    for index, (rpo, full) in enumerate(pairs, start=1):
        row = {"pair": index, "rpo_step": rpo["step"], "full_step": full["step"]}
        row.update({name: ratio(rpo[field], full[field]) for name, field in RATIOS.items()})
        pair_rows.append(row)
    stats = {name: ratio_stats([row[name] for row in pair_rows]) for name in RATIOS}
    return {
        **{name: stats[name]["median"] for name in RATIOS},
        "pairs": len(pairs),
        "ratio_stats": stats,
        "pair_ratios": pair_rows,
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
    """Per-step table, per-pair ratios and their min/median/max, as markdown."""
    settings = summary.get("settings", {})
    lines = []
    if settings:
        lines.append(
            f"RPO vs full path: model {settings.get('model')}, response budget {settings.get('response_length')}, "
            f"suffix budget {settings.get('suffix_budget')}, {settings.get('prompts')} prompts x G="
            f"{settings.get('group_size')}, answers: {settings.get('answers')}, device {settings.get('device')}"
        )
        lines.append("")
    lines += [
        "| step | phase | mode | generated tokens | rollout s | step s | engine call s | slowest request s "
        "| prefix-cache hit |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary["steps"]:
        lines.append(
            f"| {r['step']} | {r['phase']} | {r['mode']} | {_fmt(r['generated_tokens'], 0)} | {_fmt(r['rollout_s'])} "
            f"| {_fmt(r['step_s'])} | {_fmt(r['engine_call_s'])} | {_fmt(r['slowest_request_s'])} "
            f"| {_fmt(r.get('prefix_cache_hit_rate'))} |"
        )
    lines += ["", "| pair | RPO step | full step | token ratio | rollout time ratio | step time ratio |",
              "|---:|---:|---:|---:|---:|---:|"]
    for p in summary["pair_ratios"]:
        lines.append(
            f"| {p['pair']} | {p['rpo_step']} | {p['full_step']} | {_fmt(p['generated_token_ratio'], 3)} "
            f"| {_fmt(p['rollout_time_ratio'], 3)} | {_fmt(p['step_time_ratio'], 3)} |"
        )
    lines += ["", "| ratio (RPO / full path) | min | median | max |", "|---|---:|---:|---:|"]
    for name in RATIOS:
        s = summary["ratio_stats"][name]
        lines.append(f"| {name} | {_fmt(s['min'], 3)} | {_fmt(s['median'], 3)} | {_fmt(s['max'], 3)} |")
    lines.append("")
    lines.append(f"pairs counted: {summary['pairs']}" + (
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
    parser.add_argument("--pairs", type=int, default=3, help="counted (RPO, full path) pairs")
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
    parser.add_argument("--gpus", type=int, default=1, help="cuda: trainer.n_gpus_per_node")
    parser.add_argument("--tiny-dir", default=str(DEFAULT_TINY_DIR), help="where the tiny model and data are built")
    parser.add_argument("--work-dir", default=None, help="metrics, checkpoints dir (default: a temporary directory)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the summary here")
    parser.add_argument("overrides", nargs="*", help="hydra overrides (key=value), applied last")
    args = parser.parse_args(argv)
    for name in ("response_length", "suffix_budget", "group_size", "prompts", "pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_steps < 1:
        parser.error("--warmup-steps must be >= 1 (the first step seeds the cache)")
    if args.suffix_budget >= args.response_length:
        parser.error("--suffix-budget must be smaller than --response-length")
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
    steps = total_steps(args.warmup_steps, args.pairs)
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
    if args.device == "cuda":
        overrides += [
            "trainer.device=cuda",
            f"trainer.n_gpus_per_node={args.gpus}",
            "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        ]
    return overrides + list(args.overrides)


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
        """RayRPOTrainer whose steps follow :func:`step_plan`: RPO while warming up, then RPO and full path in turn.

        A full-path step hides ``partial_rollout`` for the whole step (rollout, metrics, update), so it runs exactly
        the trainer's ``rpo.enable=false`` branch, and leaves the cache untouched."""

        def init_workers(self) -> None:
            super().init_workers()
            self.async_rollout_manager = _TimedManager(self.async_rollout_manager)

        def _collect_batch(self, batches, metrics, timing_raw, profile_rollout=False):
            warmup_steps = int(self.config.bench.warmup_steps)
            phase, rpo = step_plan(self.global_steps, warmup_steps)
            self._bench_partial_rollout = self.partial_rollout
            if not rpo:
                self.partial_rollout = None
            manager = self.async_rollout_manager
            manager.calls.clear()
            try:
                batch = super()._collect_batch(batches, metrics, timing_raw, profile_rollout)
            except BaseException:
                self.partial_rollout = self._bench_partial_rollout
                raise
            metrics[MODE_METRIC] = int(rpo)
            metrics[WARMUP_METRIC] = int(phase == "warmup")
            metrics[ENGINE_CALL_METRIC] = float(sum(manager.calls))
            metrics["bench/engine_calls"] = len(manager.calls)
            if batch is not None:
                metrics.update(prefix_cache_metrics(batch))
            print(f"bench: step {self.global_steps} {phase} {'rpo' if rpo else 'full'}: "
                  f"{metrics.get(TOKENS_METRIC)} generated tokens, gen {timing_raw.get('gen', float('nan')):.2f} s")
            return batch

        def _update_policy(self, batch, metrics, timing_raw, is_last_step):
            try:
                return super()._update_policy(batch, metrics, timing_raw, is_last_step)
            finally:
                self.partial_rollout = self._bench_partial_rollout

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
        config.bench = {"warmup_steps": args.warmup_steps, "pairs": args.pairs}

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
        "pairs_requested": args.pairs,
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
    return summarize(records, settings, machine, wall_s=time.monotonic() - started)


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
    if summary["pairs"] < 1:
        print("no counted (RPO, full path) pair: see the metrics file", summary["settings"]["metrics_path"])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
