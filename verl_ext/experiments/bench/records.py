"""From verl's file-logger lines to the benchmark's summary: per-step records, rounds, per-arm ratios to each arm's
baseline with their min/median/max, the time breakdown, the JSON summary and its markdown table. No verl import."""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Optional, Sequence

from verl_ext.experiments.bench.arms import ARMS, DEFAULT_ARMS, FAST_BASELINE_ARM

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


def denominators(arm: str, arms: Sequence[str]) -> list[tuple[str, str]]:
    """(baseline arm, ratio-name suffix) of each ratio ``arm`` gets: its own baseline, and with ``full_rows`` in the
    run also that one for every dynamic-batch arm (suffix ``_vs_full_rows``)."""
    result = [] if arm == ARMS[arm].baseline else [(ARMS[arm].baseline, "")]
    if FAST_BASELINE_ARM in arms and arm != FAST_BASELINE_ARM and ARMS[arm].dynamic_bsz:
        result.append((FAST_BASELINE_ARM, f"_vs_{FAST_BASELINE_ARM}"))
    return result


def summarize(records: Sequence[dict], settings: dict, machine: dict, wall_s: Optional[float] = None,
              arms: Sequence[str] = DEFAULT_ARMS) -> dict:
    """The benchmark's JSON: the medians over the counted rounds of each arm's ratios to ``full`` (``rpo``'s as
    top-level keys: ``generated_token_ratio``, ``rollout_time_ratio``, ``step_time_ratio``, ``old_log_prob_ratio``,
    ``update_actor_ratio``; other arms' as ``<arm>/<ratio>``) and, with ``full_rows`` in the run, to it as well
    (``<ratio>_vs_full_rows``; ``full``'s own among them shows the kernel gap), ``rounds``, min/median/max of each ratio
    (``ratio_stats``), the per-round values, every step record, the time breakdown, the settings and the machine."""
    rounds = round_steps(records, arms)
    round_rows = []
    for index, by_arm in enumerate(rounds, start=1):
        row: dict[str, Any] = {"round": index, "steps": {arm: r["step"] for arm, r in by_arm.items()}}
        for arm, record in by_arm.items():
            for baseline, suffix in denominators(arm, arms):
                row.update({ratio_name(arm, name + suffix): ratio(record[field], by_arm[baseline][field])
                            for name, field in RATIOS.items()})
        round_rows.append(row)
    names = [ratio_name(arm, name + suffix) for arm in arms for _, suffix in denominators(arm, arms)
             for name in RATIOS]
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
    lines += ["", "| ratio (arm / its full-path baseline; `_vs_full_rows`: / full_rows) | min | median | max |",
              "|---|---:|---:|---:|"]
    for name, s in summary["ratio_stats"].items():
        lines.append(f"| {name} | {_fmt(s['min'], 3)} | {_fmt(s['median'], 3)} | {_fmt(s['max'], 3)} |")
    lines.append("")
    lines.append(f"rounds counted: {summary['rounds']}" + (
        f", wall time {summary['wall_s']:.0f} s" if summary.get("wall_s") is not None else ""))
    return "\n".join(lines)
