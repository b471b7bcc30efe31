"""Statistics over seeds and the paired comparison of every arm with the full path (pure: no verl, no plotting)."""

from __future__ import annotations

import statistics
from typing import Any, Optional, Sequence

from verl_ext.compare.curves import mean_curve, spread
from verl_ext.experiments.learning.arms import ARMS, BASELINE
from verl_ext.experiments.learning.curves import DIAGNOSTIC_METRICS


def share(part: float, whole: float) -> Optional[float]:
    """``part / whole``, None when ``whole`` is not positive (a run that trained for no time or generated nothing)."""
    return part / whole if whole > 0 else None


def first_reaching(curve: Sequence[dict], target: float) -> Optional[dict]:
    """The first point of ``curve`` whose accuracy is at least ``target`` (None when it never gets there)."""
    return next((p for p in curve if p["acc"] >= target - 1e-9), None)


def compare_seed(full: Sequence[dict], arm: Sequence[dict]) -> dict[str, Any]:
    """One seed's verdict for an arm against the full path: final accuracies and their difference, the arm's
    training wall-clock and tokens as a share of the baseline's, and whether (and at what share of the baseline's
    wall-clock) the arm, after at least one training step, first reached the baseline's final accuracy."""
    full_end, arm_end = full[-1], arm[-1]
    # Only trained points count: the shared start "reaches" a baseline that got worse, which says nothing.
    reached = first_reaching([p for p in arm if p["step"] > 0], full_end["acc"])
    return {
        "initial_acc": full[0]["acc"],
        "full_final_acc": full_end["acc"],
        "arm_final_acc": arm_end["acc"],
        "final_acc_diff": arm_end["acc"] - full_end["acc"],
        "full_wall_s": full_end["wall_s"],
        "arm_wall_s": arm_end["wall_s"],
        "wall_ratio": share(arm_end["wall_s"], full_end["wall_s"]),
        "token_ratio": share(arm_end["generated_tokens"], full_end["generated_tokens"]),
        "reached_full_final": reached is not None,
        "reached_at_step": None if reached is None else reached["step"],
        "reached_at_wall_frac": None if reached is None else share(reached["wall_s"], full_end["wall_s"]),
    }


def paired_interval(differences: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean of per-seed paired differences with its Student-t confidence interval (None with a single seed)."""
    from scipy import stats

    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return {"mean": mean, "std": 0.0, "n": n, "low": None, "high": None, "confidence": confidence}
    std = statistics.stdev(differences)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / n**0.5
    return {"mean": mean, "std": std, "n": n, "low": mean - half, "high": mean + half, "confidence": confidence}


def summarize(runs: dict[str, dict[int, list[dict]]],
              diagnostics: Optional[dict[str, dict[int, dict[str, float]]]] = None) -> dict[str, Any]:
    """``runs[arm][seed]`` = curve, for the full path and any other arms. Per arm: the mean curve, the spread over
    seeds of start, final and best accuracy, wall-clock, tokens and diagnostics; per other arm, paired by seed with
    the full path: the difference of final accuracy with its 95% interval, the wall-clock and token shares, and in
    how many seeds the arm reached the baseline's final accuracy. Only seeds every arm ran count."""
    if not runs.get(BASELINE):
        raise ValueError(f"no {BASELINE} run: every arm is compared with the full path")
    names = [arm for arm in ARMS if runs.get(arm)]
    seeds = sorted(set.intersection(*(set(runs[arm]) for arm in names)))
    if not seeds:
        raise ValueError(f"no seed has a run of every arm ({', '.join(names)})")
    diagnostics = diagnostics or {}

    def over_seeds(values: Sequence[Optional[float]]) -> Optional[dict[str, float]]:
        defined = [v for v in values if v is not None]
        return spread(defined) if defined else None

    arms = {}
    for arm in names:
        curves = [runs[arm][seed] for seed in seeds]
        per_seed_diag = [diagnostics.get(arm, {}).get(seed, {}) for seed in seeds]
        arms[arm] = {
            "mean_curve": mean_curve(curves),
            "per_seed": {seed: {"initial_acc": c[0]["acc"], "final_acc": c[-1]["acc"]}
                         for seed, c in zip(seeds, curves, strict=True)},
            "initial_acc": spread([c[0]["acc"] for c in curves]),
            "final_acc": spread([c[-1]["acc"] for c in curves]),
            "best_acc": spread([max(p["acc"] for p in c) for c in curves]),
            "gain": spread([c[-1]["acc"] - c[0]["acc"] for c in curves]),
            "train_wall_s": spread([c[-1]["wall_s"] for c in curves]),
            "generated_tokens": spread([c[-1]["generated_tokens"] for c in curves]),
            "diagnostics": {metric: over_seeds([d.get(metric) for d in per_seed_diag]) for metric in DIAGNOSTIC_METRICS
                            if any(metric in d for d in per_seed_diag)},
        }
    comparisons = {}
    for arm in names:
        if arm == BASELINE:
            continue
        per_seed = {seed: compare_seed(runs[BASELINE][seed], runs[arm][seed]) for seed in seeds}
        comparisons[arm] = {
            "per_seed": per_seed,
            "final_acc_diff": paired_interval([per_seed[s]["final_acc_diff"] for s in seeds]),
            "wall_ratio": over_seeds([per_seed[s]["wall_ratio"] for s in seeds]),
            "token_ratio": over_seeds([per_seed[s]["token_ratio"] for s in seeds]),
            "reached_full_final": sum(per_seed[s]["reached_full_final"] for s in seeds),
            "reached_at_wall_frac": over_seeds([per_seed[s]["reached_at_wall_frac"] for s in seeds]),
        }
    # Every run validates the same warm model before training: the spread of those is the validation's own noise.
    start_validations = spread([runs[arm][seed][0]["acc"] for arm in names for seed in seeds])
    return {"seeds": seeds, "arms": arms, "comparisons": comparisons, "start_validations": start_validations,
            "checks": instrument_checks(arms, comparisons)}


# The testbed's own acceptance: the full path gains at least MIN_GAIN with a seed std under MAX_GAIN_STD_SHARE of the
# gain, and the no-reuse RPO path ends within max(NULL_TOLERANCE, 2 seed std of the full path's final accuracy) of it.
MIN_GAIN = 0.10
MAX_GAIN_STD_SHARE = 1 / 3
NULL_TOLERANCE = 0.03
NULL_ARM = "rpo_null"


def instrument_checks(arms: dict[str, Any], comparisons: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Whether the instrument can see a difference at all (``power``: the full path learns, consistently over seeds)
    and whether the RPO plumbing alone changes nothing (``null``, when the ``rpo_null`` arm ran)."""
    gain = arms[BASELINE]["gain"]
    checks = {"power": {"gain": gain["mean"], "gain_std": gain["std"], "min_gain": MIN_GAIN,
                        "max_std": gain["mean"] * MAX_GAIN_STD_SHARE,
                        "holds": gain["mean"] >= MIN_GAIN and gain["std"] < gain["mean"] * MAX_GAIN_STD_SHARE}}
    if NULL_ARM in comparisons:
        diff = comparisons[NULL_ARM]["final_acc_diff"]["mean"]
        tolerance = max(NULL_TOLERANCE, 2 * arms[BASELINE]["final_acc"]["std"])
        checks["null"] = {"final_acc_diff": diff, "tolerance": tolerance, "holds": abs(diff) <= tolerance}
    return checks
