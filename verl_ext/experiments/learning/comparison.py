"""Statistics over seeds, every arm against the full path under one pooled variance, and the accuracy-cost frontier
(pure: no verl, no plotting)."""

from __future__ import annotations

import math
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


# The goal for an RPO setting: final accuracy non-inferior to the full path's (the lower end of the 95% interval
# of the difference at least -NON_INFERIORITY_MARGIN) at no more than TOKEN_SHARE_GOAL of its generated tokens.
NON_INFERIORITY_MARGIN = 0.05
TOKEN_SHARE_GOAL = 0.35


def pooled_model(finals: dict[str, Sequence[float]], confidence: float = 0.95) -> dict[str, Any]:
    """A model over all runs: each arm has its own mean final accuracy, and every run's deviation from its arm's mean
    shares one variance, estimated from all arms together (``runs - arms`` degrees of freedom). With 3 to 5 seeds per
    arm a per-arm standard deviation has 2 to 4 degrees of freedom; pooling gives the intervals the rest. It assumes
    arms differ in mean, not in run-to-run spread: the per-arm spreads are reported beside it to check that. Runs of
    one seed share data order and sampling seeds; the model treats them as independent, which widens the intervals
    when seeds correlate, never narrows them."""
    from scipy import stats

    runs = sum(len(values) for values in finals.values())
    dof = runs - len(finals)
    squares = sum((v - statistics.fmean(values)) ** 2 for values in finals.values() for v in values)
    std = math.sqrt(squares / dof) if dof > 0 else None
    t = float(stats.t.ppf((1 + confidence) / 2, dof)) if dof > 0 else None
    return {"pooled_std": std, "dof": dof, "runs": runs, "t": t, "confidence": confidence}


def difference_interval(model: dict[str, Any], values: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """``mean(values) - mean(baseline)`` with its interval under :func:`pooled_model` (None ends without residual
    degrees of freedom)."""
    diff = statistics.fmean(values) - statistics.fmean(baseline)
    result = {"mean": diff, "n": len(values), "n_baseline": len(baseline), "low": None, "high": None, "se": None,
              "confidence": model["confidence"]}
    if model["pooled_std"] is not None:
        se = model["pooled_std"] * math.sqrt(1 / len(values) + 1 / len(baseline))
        result.update(se=se, low=diff - model["t"] * se, high=diff + model["t"] * se)
    return result


def welch_interval(values: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """``mean(values) - mean(baseline)`` with Welch's t-interval: each of the two arms keeps its own variance
    (Welch-Satterthwaite degrees of freedom). The check on :func:`pooled_model`'s equal-spread assumption: an arm
    whose runs spread much more than the others' (unstable updates) widens every pooled interval and gets too
    narrow one itself; Welch's interval does neither. None ends with fewer than two runs in either arm or no spread
    at all."""
    from scipy import stats

    diff = statistics.fmean(values) - statistics.fmean(baseline)
    result = {"mean": diff, "low": None, "high": None, "dof": None, "confidence": confidence}
    if len(values) < 2 or len(baseline) < 2:
        return result
    a, b = statistics.variance(values) / len(values), statistics.variance(baseline) / len(baseline)
    if a + b == 0:
        return result
    dof = (a + b) ** 2 / (a**2 / (len(values) - 1) + b**2 / (len(baseline) - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, dof)) * math.sqrt(a + b)
    result.update(low=diff - half, high=diff + half, dof=dof)
    return result


def mean_interval(model: dict[str, Any], values: Sequence[float]) -> Optional[tuple[float, float]]:
    """An arm's mean final accuracy with its interval under :func:`pooled_model` (None without degrees of freedom)."""
    if model["pooled_std"] is None:
        return None
    mean, half = statistics.fmean(values), model["t"] * model["pooled_std"] / math.sqrt(len(values))
    return mean - half, mean + half


def summarize(runs: dict[str, dict[int, list[dict]]],
              diagnostics: Optional[dict[str, dict[int, dict[str, float]]]] = None) -> dict[str, Any]:
    """``runs[arm][seed]`` = curve, for the full path and any other arms, each on its own seeds (the headline arms on
    more). Per arm: the mean curve, the spread over its seeds of start, final and best accuracy, wall-clock, tokens and
    diagnostics. Per other arm against the full path: the final-accuracy difference with its 95% interval under
    :func:`pooled_model` (all arms' runs; the goal is judged on it) and Welch's (:func:`welch_interval`, the check on
    its equal-spread assumption), its generated-token and wall-clock shares (mean over its runs over the full
    path's mean; tokens of the whole run, seeding included), whether it meets the goal, and over the seeds both ran,
    per-seed verdicts (:func:`compare_seed`). ``frontier``: one point per arm, full path included."""
    if not runs.get(BASELINE):
        raise ValueError(f"no {BASELINE} run: every arm is compared with the full path")
    names = [arm for arm in ARMS if runs.get(arm)]
    seeds = {arm: sorted(runs[arm]) for arm in names}
    diagnostics = diagnostics or {}

    def over_seeds(values: Sequence[Optional[float]]) -> Optional[dict[str, float]]:
        defined = [v for v in values if v is not None]
        return spread(defined) if defined else None

    arms = {}
    for arm in names:
        curves = [runs[arm][seed] for seed in seeds[arm]]
        per_seed_diag = [diagnostics.get(arm, {}).get(seed, {}) for seed in seeds[arm]]
        arms[arm] = {
            "seeds": seeds[arm],
            "mean_curve": mean_curve(curves),
            "per_seed": {seed: {"initial_acc": c[0]["acc"], "final_acc": c[-1]["acc"]}
                         for seed, c in zip(seeds[arm], curves, strict=True)},
            "initial_acc": spread([c[0]["acc"] for c in curves]),
            "final_acc": spread([c[-1]["acc"] for c in curves]),
            "best_acc": spread([max(p["acc"] for p in c) for c in curves]),
            "gain": spread([c[-1]["acc"] - c[0]["acc"] for c in curves]),
            "train_wall_s": spread([c[-1]["wall_s"] for c in curves]),
            "generated_tokens": spread([c[-1]["generated_tokens"] for c in curves]),
            "diagnostics": {metric: over_seeds([d.get(metric) for d in per_seed_diag]) for metric in DIAGNOSTIC_METRICS
                            if any(metric in d for d in per_seed_diag)},
        }
    finals = {arm: [runs[arm][seed][-1]["acc"] for seed in seeds[arm]] for arm in names}
    model = pooled_model(finals)
    full = arms[BASELINE]
    comparisons = {}
    for arm in names:
        if arm == BASELINE:
            continue
        shared = [seed for seed in seeds[arm] if seed in runs[BASELINE]]
        per_seed = {seed: compare_seed(runs[BASELINE][seed], runs[arm][seed]) for seed in shared}
        diff = difference_interval(model, finals[arm], finals[BASELINE])
        token_share = share(arms[arm]["generated_tokens"]["mean"], full["generated_tokens"]["mean"])
        welch = welch_interval(finals[arm], finals[BASELINE])
        comparisons[arm] = {
            "final_acc_diff": diff,
            "final_acc_diff_welch": welch,
            "non_inferior_welch": welch["low"] is not None and welch["low"] >= -NON_INFERIORITY_MARGIN,
            "token_share": token_share,
            "wall_share": share(arms[arm]["train_wall_s"]["mean"], full["train_wall_s"]["mean"]),
            "non_inferior": diff["low"] is not None and diff["low"] >= -NON_INFERIORITY_MARGIN,
            "meets_goal": (diff["low"] is not None and diff["low"] >= -NON_INFERIORITY_MARGIN
                           and token_share is not None and token_share <= TOKEN_SHARE_GOAL),
            "shared_seeds": shared,
            "per_seed": per_seed,
            "reached_full_final": sum(verdict["reached_full_final"] for verdict in per_seed.values()),
            "reached_at_wall_frac": over_seeds([verdict["reached_at_wall_frac"] for verdict in per_seed.values()]),
        }
    # Every run validates the same warm model before training: the spread of those is the validation's own noise.
    start_validations = spread([runs[arm][seed][0]["acc"] for arm in names for seed in seeds[arm]])
    return {"seeds": seeds, "arms": arms, "model": model, "comparisons": comparisons,
            "frontier": frontier(arms, comparisons, model, finals), "start_validations": start_validations,
            "goal": {"margin": NON_INFERIORITY_MARGIN, "token_share": TOKEN_SHARE_GOAL,
                     "met_by": [arm for arm, c in comparisons.items() if c["meets_goal"]]},
            "checks": instrument_checks(arms, comparisons)}


def frontier(arms: dict[str, Any], comparisons: dict[str, Any], model: dict[str, Any],
             finals: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One point per arm (the full path at shares 1): final accuracy with its interval, generated-token and
    wall-clock shares, sorted by token share."""
    points = []
    for arm in arms:
        c = comparisons.get(arm)
        interval = mean_interval(model, finals[arm])
        points.append({
            "arm": arm,
            "final_acc": statistics.fmean(finals[arm]),
            "final_acc_low": None if interval is None else interval[0],
            "final_acc_high": None if interval is None else interval[1],
            "token_share": 1.0 if c is None else c["token_share"],
            "wall_share": 1.0 if c is None else c["wall_share"],
            "diff_low": None if c is None else c["final_acc_diff"]["low"],
            "runs": len(finals[arm]),
        })
    return sorted(points, key=lambda point: (point["token_share"] is None, point["token_share"]))


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
