"""What the experiment writes: ``curves.json`` (every run, the summary, the settings and the machine), the two
accuracy plots and ``summary.md``; ``replot`` rebuilds all of them from a saved ``curves.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from verl_ext.compare.plots import headless_pyplot, plot_accuracy
from verl_ext.experiments.learning.arms import ARMS
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
        return f"{d['mean']:+.3f} (one seed)"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _share(s: Optional[dict[str, float]]) -> str:
    return "n/a" if s is None else f"{s['mean']:.2f} ± {s['std']:.2f}"


def markdown_summary(summary: dict[str, Any], settings: dict[str, Any]) -> str:
    """The experiment's tables: per arm (mean ± sample std over seeds), the paired comparison with the full path
    (95% t-interval of the final-accuracy difference), the diagnostics, and the per-seed finals."""
    seeds = summary["seeds"]
    names = list(summary["arms"])
    lines = [
        f"{len(names)} arms, {len(seeds)} seeds ({', '.join(map(str, seeds))}), "
        f"{settings['steps']} steps of {settings['prompts_per_step']} prompts x G={settings['group_size']} "
        f"over {settings['train_prompts']} training prompts, "
        f"response budget {settings['response_length']}, RPO suffix budget {settings['suffix_budget']} "
        f"({settings['truncation_mode']}), actor lr {settings['actor_lr']} ({settings['lr_schedule']}), KL loss "
        f"{settings['kl_coef']}, rollout temperature "
        f"{settings['temperature']}, reward {settings['reward']}; validation: {val_metric_label(settings)}.",
        "",
        "| arm | start acc | final acc | best acc | final - full [95% CI] | wall-clock / full | tokens / full "
        "| reached full's final |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in names:
        a = summary["arms"][arm]
        c = summary["comparisons"].get(arm)
        versus = ("(baseline)", "1", "1", "") if c is None else (
            _interval(c["final_acc_diff"]), _share(c["wall_ratio"]), _share(c["token_ratio"]),
            f"{c['reached_full_final']} of {len(seeds)}")
        lines.append(f"| {ARMS[arm].label} | {_pm(a['initial_acc'])} | {_pm(a['final_acc'])} | {_pm(a['best_acc'])} "
                     f"| {' | '.join(versus)} |")
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
    lines += ["", f"Validation noise: the start model, validated once by each of the {len(names) * len(seeds)} runs, "
              f"scored {_pm(noise)}.",
              "", "Final accuracy per seed (every arm starts from the same model):", "",
              "| seed | start acc | " + " | ".join(ARMS[arm].label for arm in names) + " |",
              "|---:|---:|" + "---:|" * len(names)]
    for seed in seeds:
        runs_of_seed = [summary["arms"][arm]["per_seed"][seed] for arm in names]
        lines.append(f"| {seed} | {runs_of_seed[0]['initial_acc']:.3f} | "
                     + " | ".join(f"{run['final_acc']:.3f}" for run in runs_of_seed) + " |")
    return "\n".join(lines)


def plot_curves(runs: dict[str, dict[int, list[dict]]], summary: dict[str, Any], x_field: str, x_label: str,
                y_label: str, out_path: Path, title: str) -> None:
    """Accuracy against ``x_field`` with the compare tool's plot: each seed thin, the mean over seeds thick with a
    min-max band, in the arms' colours."""
    seeds = summary["seeds"]
    curves = {arm: [runs[arm][seed] for seed in seeds] for arm in summary["arms"]}
    styles = {arm: (f"{ARMS[arm].label} (mean of {len(seeds)} seeds)", ARMS[arm].color) for arm in summary["arms"]}
    plot_accuracy(curves, styles, x_field, x_label, y_label, out_path, title)


# The per-step diagnostics drawn in diagnostics.png, one panel each.
PLOTTED_DIAGNOSTICS = ("critic/score/mean", "rpo/no_signal_group_frac", "rpo/cached_acc_frac",
                       "rpo/cache_staleness_mean")


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
    :func:`verl_ext.experiments.learning.runner.run_arm` returns them), the three plots and summary.md; returns the
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
    subtitle = f"tiny Qwen2 on CPU, {len(summary['seeds'])} seeds, {settings['steps']} steps"
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
