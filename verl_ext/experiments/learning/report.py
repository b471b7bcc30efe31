"""What the experiment writes: ``curves.json`` (every run, the summary, the settings and the machine), the two
accuracy plots and ``summary.md``; ``replot`` rebuilds all of them from a saved ``curves.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from verl_ext.compare.plots import headless_pyplot, plot_accuracy
from verl_ext.experiments.learning.arms import ARMS, BASELINE
from verl_ext.experiments.learning.comparison import summarize
from verl_ext.experiments.learning.curves import DIAGNOSTIC_METRICS


def val_metric_label(settings: dict[str, Any]) -> str:
    """What the accuracy axis measures, e.g. "val acc, mean of 4 samples at T=0.7 over 64 prompts"."""
    if settings["val_temperature"] <= 0:
        return f"greedy val accuracy ({settings['val_prompts']} prompts)"
    return (f"val accuracy, mean of {settings['val_samples']} samples at T={settings['val_temperature']} "
            f"({settings['val_prompts']} prompts)")


def _pm(s: dict[str, float], digits: int = 3) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} (min {s['min']:.{digits}f}, max {s['max']:.{digits}f})"


def _interval(d: dict[str, Any]) -> str:
    if d["low"] is None:
        return f"{d['mean']:+.3f} (no interval)"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _share(s: Optional[dict[str, float]]) -> str:
    return "n/a" if s is None else f"{s['mean']:.2f} ± {s['std']:.2f}"


def _bracket(d: dict[str, Any]) -> str:
    return "n/a" if d["low"] is None else f"[{d['low']:+.3f}, {d['high']:+.3f}]"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _ratio(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _seed_list(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds))


def markdown_summary(summary: dict[str, Any], settings: dict[str, Any]) -> str:
    """The experiment's tables: per arm (mean ± sample std over its seeds), its difference from the full path with the
    pooled-variance 95% interval, its token and wall-clock shares and the goal; the frontier; the diagnostics; the
    instrument checks; the per-seed finals."""
    names = list(summary["arms"])
    model, goal = summary["model"], summary["goal"]
    all_seeds = sorted({seed for arm in names for seed in summary["seeds"][arm]})
    runs = sum(len(summary["seeds"][arm]) for arm in names)
    samples = settings["val_samples"] * settings["val_prompts"]
    pooled_std = "n/a" if model["pooled_std"] is None else f"{model['pooled_std']:.3f}"
    lines = [
        f"{len(names)} arms, {runs} runs (seeds {_seed_list(all_seeds)}; runs per arm below), "
        f"{settings['steps']} steps of {settings['prompts_per_step']} prompts x G={settings['group_size']} "
        f"over {settings['train_prompts']} training prompts, "
        f"response budget {settings['response_length']}, RPO suffix budget {settings['suffix_budget']} "
        f"({settings['truncation_mode']}), actor lr {settings['actor_lr']} ({settings['lr_schedule']}), KL loss "
        f"{settings['kl_coef']}, rollout temperature "
        f"{settings['temperature']}, reward {settings['reward']}; validation: {val_metric_label(settings)}.",
        "",
        f"Intervals: 95%, from one residual variance pooled over all {model['runs']} runs ({model['dof']} degrees of "
        f"freedom; pooled run-to-run std {pooled_std}). "
        f"Tokens and wall-clock: the arm's mean over its runs / the full path's (generated tokens of the whole run, "
        f"seeding included; training wall-clock). Goal: lower end of the difference >= {-goal['margin']:+.2f} at "
        f"tokens <= {goal['token_share']:.2f}, judged on the pooled interval. Welch's interval (the arm and the full "
        "path only, each with its own variance) checks the pooled model's assumption that arms spread alike.",
        "",
        "| arm | runs | start acc | final acc | final - full [95% CI, pooled] | [95% CI, Welch] | tokens / full "
        "| wall-clock / full | non-inferior (pooled, Welch) | goal |",
        "|---|---:|---|---|---|---|---:|---:|---|---|",
    ]
    for arm in names:
        a = summary["arms"][arm]
        c = summary["comparisons"].get(arm)
        versus = ("(baseline)", "", "1", "1", "", "") if c is None else (
            _interval(c["final_acc_diff"]), _bracket(c["final_acc_diff_welch"]), _ratio(c["token_share"]),
            _ratio(c["wall_share"]), f"{_yes(c['non_inferior'])}, {_yes(c['non_inferior_welch'])}",
            "**met**" if c["meets_goal"] else "no")
        lines.append(f"| {ARMS[arm].label} | {len(summary['seeds'][arm])} | {_pm(a['initial_acc'])} "
                     f"| {_pm(a['final_acc'])} | {' | '.join(versus)} |")
    met = goal["met_by"]
    lines += ["", "Goal met by: " + (", ".join(ARMS[arm].label for arm in met) if met else
                                     "no RPO setting (see the frontier for how close each came).")]
    lines += ["", "Frontier (sorted by generated tokens; final accuracy with its 95% interval):", "",
              "| arm | tokens / full | wall-clock / full | final acc [95% CI] | lower end of final - full |",
              "|---|---:|---:|---|---:|"]
    for point in summary["frontier"]:
        interval = "" if point["final_acc_low"] is None else \
            f" [{point['final_acc_low']:.3f}, {point['final_acc_high']:.3f}]"
        low = "(baseline)" if point["arm"] == BASELINE else (
            "n/a" if point["diff_low"] is None else f"{point['diff_low']:+.3f}")
        lines.append(f"| {ARMS[point['arm']].label} | {_ratio(point['token_share'])} | {_ratio(point['wall_share'])} "
                     f"| {point['final_acc']:.3f}{interval} | {low} |")
    diag_names = [m for m in DIAGNOSTIC_METRICS if any(m in summary["arms"][arm]["diagnostics"] for arm in names)]
    if diag_names:
        lines += ["", "Diagnostics, mean over training steps (mean ± std over seeds):", "",
                  "| arm | " + " | ".join(f"`{m}`" for m in diag_names) + " |", "|---|" + "---|" * len(diag_names)]
        for arm in names:
            diag = summary["arms"][arm]["diagnostics"]
            lines.append(f"| {ARMS[arm].label} | " + " | ".join(
                _share(diag.get(m)) if m in diag else "" for m in diag_names) + " |")
    power = summary["checks"]["power"]
    lines += ["", f"Power: the full path gained {power['gain']:+.3f} ± {power['gain_std']:.3f} over its start "
              f"(needs >= {power['min_gain']:.2f} with a seed std under a third of it): "
              f"{'holds' if power['holds'] else 'DOES NOT HOLD'}."]
    null = summary["checks"].get("null")
    if null is not None:
        lines.append(f"Null: RPO path without reuse - full = {null['final_acc_diff']:+.3f} (must be within "
                     f"{null['tolerance']:.3f}): {'holds' if null['holds'] else 'DOES NOT HOLD'}.")
    noise = summary["start_validations"]
    lines += ["", f"Validation noise: the start model, validated once by each of the {runs} runs, scored "
              f"{_pm(noise)}; one validation's sampling std is at most sqrt(0.25 / {samples}) = "
              f"{(0.25 / samples) ** 0.5:.4f} ({settings['val_samples']} samples x {settings['val_prompts']} prompts).",
              "", "Final accuracy per seed (every arm starts from the same model; blank: not run):", "",
              "| seed | " + " | ".join(ARMS[arm].label for arm in names) + " |",
              "|---:|" + "---:|" * len(names)]
    for seed in all_seeds:
        cells = [summary["arms"][arm]["per_seed"].get(seed) for arm in names]
        lines.append(f"| {seed} | " + " | ".join("" if cell is None else f"{cell['final_acc']:.3f}" for cell in cells)
                     + " |")
    return "\n".join(lines)


def plot_curves(runs: dict[str, dict[int, list[dict]]], summary: dict[str, Any], x_field: str, x_label: str,
                y_label: str, out_path: Path, title: str) -> None:
    """Accuracy against ``x_field`` with the compare tool's plot: each seed thin, the mean over seeds thick with a
    min-max band, in the arms' colours."""
    seeds = summary["seeds"]
    curves = {arm: [runs[arm][seed] for seed in seeds[arm]] for arm in summary["arms"]}
    styles = {arm: (f"{ARMS[arm].label} (mean of {len(seeds[arm])} seeds)", ARMS[arm].color)
              for arm in summary["arms"]}
    plot_accuracy(curves, styles, x_field, x_label, y_label, out_path, title)


def plot_frontier(summary: dict[str, Any], y_label: str, out_path: Path, title: str) -> None:
    """Final accuracy (95% interval) against the generated-token share and against the wall-clock share, one point
    per arm, with the full path's mean and the non-inferiority margin below it drawn across."""
    plt = headless_pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.8), dpi=110, sharey=True)
    full = next(point for point in summary["frontier"] if point["arm"] == BASELINE)
    for ax, field, label in ((axes[0], "token_share", "generated tokens / full path's"),
                             (axes[1], "wall_share", "training wall-clock / full path's")):
        for point in summary["frontier"]:
            if point[field] is None:
                continue
            low, high = point["final_acc_low"], point["final_acc_high"]
            yerr = None if low is None else [[point["final_acc"] - low], [high - point["final_acc"]]]
            ax.errorbar(point[field], point["final_acc"], yerr=yerr, fmt="o", capsize=3,
                        color=ARMS[point["arm"]].color, label=f"{ARMS[point['arm']].label} ({point['runs']} runs)")
        ax.axhline(full["final_acc"], color=ARMS[BASELINE].color, linewidth=0.8, linestyle="--")
        ax.axhline(full["final_acc"] - summary["goal"]["margin"], color="tab:red", linewidth=0.8, linestyle=":")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].axvline(summary["goal"]["token_share"], color="tab:red", linewidth=0.8, linestyle=":")
    axes[0].set_ylabel(f"final {y_label}")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


# The per-step diagnostics drawn in diagnostics.png, one panel each.
PLOTTED_DIAGNOSTICS = ("critic/score/mean", "rpo/no_signal_group_frac", "rpo/cached_acc_frac", "rpo/cut_depth_mean")


def plot_diagnostics(details: dict[str, dict[int, dict]], out_path: Path, title: str) -> None:
    """One panel per :data:`PLOTTED_DIAGNOSTICS`: per arm, the value at each training step, averaged over seeds."""
    plt = headless_pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9.6, 6.4), dpi=110, sharex=True)
    for ax, metric in zip(axes.flat, PLOTTED_DIAGNOSTICS, strict=True):
        for arm, by_seed in details.items():
            per_step: dict[int, list[float]] = {}
            for run in by_seed.values():
                for step, value in run.get("diagnostics_by_step", {}).get(metric, []):
                    per_step.setdefault(int(step), []).append(value)
            if per_step:
                steps = sorted(per_step)
                ax.plot(steps, [sum(per_step[s]) / len(per_step[s]) for s in steps], color=ARMS[arm].color,
                        linewidth=1.6, label=ARMS[arm].label)
        ax.set_title(f"`{metric}`", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("training step")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def write_report(out: Path, details: dict[str, dict[int, dict]], settings: dict[str, Any], machine: dict,
                 wall_s: float) -> str:
    """curves.json (with the summary recomputed from ``details[arm][seed]``, each run's curve and diagnostics as
    :func:`verl_ext.experiments.learning.runner.run_arm` returns them), the four plots and summary.md; returns the
    text."""
    runs = {arm: {seed: run["curve"] for seed, run in by_seed.items()} for arm, by_seed in details.items()}
    diagnostics = {
        arm: {seed: run.get("diagnostics", {}) for seed, run in by_seed.items()} for arm, by_seed in details.items()
    }
    summary = summarize(runs, diagnostics)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "summary": summary,
        "settings": settings,
        "machine": machine,
        "wall_s": wall_s,
        "runs": {arm: {str(seed): details[arm][seed] for seed in runs[arm]} for arm in runs},
    }
    (out / "curves.json").write_text(json.dumps(result, indent=2) + "\n")
    subtitle = f"tiny Qwen2 on CPU, {summary['model']['runs']} runs, {settings['steps']} steps"
    y_label = val_metric_label(settings)
    plot_curves(
        runs,
        summary,
        "wall_s",
        "training wall-clock (s, rollout + update)",
        y_label,
        out / "accuracy_vs_wallclock.png",
        f"Accuracy vs training wall-clock ({subtitle})",
    )
    plot_curves(
        runs,
        summary,
        "generated_tokens",
        "generated tokens (cumulative)",
        y_label,
        out / "accuracy_vs_generated_tokens.png",
        f"Accuracy vs generated tokens ({subtitle})",
    )
    plot_diagnostics(details, out / "diagnostics.png", f"Per-step diagnostics, mean over seeds ({subtitle})")
    plot_frontier(summary, y_label, out / "frontier.png",
                  f"Accuracy-cost frontier: final accuracy (95% interval) per arm ({subtitle})")
    reused = settings["warmup"]["reused"]
    footer = (
        f"Whole experiment (warm-up {'reused' if reused else 'included'}, every run's process time): "
        f"{wall_s / 60:.1f} min on "
        f"{machine.get('cpu_count')} cores ({machine.get('cpu_model')})."
    )
    text = f"{markdown_summary(summary, settings)}\n\n{footer}"
    (out / "summary.md").write_text(text + "\n")
    return text


def replot(out: Path) -> str:
    """Rebuild the summary, plots and table from ``out/curves.json`` (e.g. after changing how they are drawn)."""
    saved = json.loads((out / "curves.json").read_text())
    details = {arm: {int(seed): run for seed, run in by_seed.items()} for arm, by_seed in saved["runs"].items()}
    return write_report(out, details, saved["settings"], saved["machine"], saved["wall_s"])
