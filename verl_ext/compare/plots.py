"""The comparison's pictures: accuracy against training wall-clock and against generated tokens (each run thin, the
mean of a label's runs thick with a min-max band), and step time per step. The learning testbed draws its accuracy
plots with :func:`plot_accuracy` too."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from verl_ext.compare.curves import mean_curve


def headless_pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display on the machines this runs on)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy(curves: Mapping[str, Sequence[Sequence[dict]]], styles: Mapping[str, tuple[str, str]],
                  x_field: str, x_label: str, y_label: str, out_path: Path, title: str) -> None:
    """Accuracy against ``x_field`` (``wall_s`` or ``generated_tokens`` of :func:`verl_ext.compare.curves.run_curve`
    points). ``curves[label]`` holds one curve per run, ``styles[label]`` the legend text and colour."""
    plt = headless_pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, label_curves in curves.items():
        legend, color = styles[label]
        if len(label_curves) > 1:
            for curve in label_curves:
                ax.plot([p[x_field] for p in curve], [p["acc"] for p in curve], color=color, alpha=0.3, linewidth=0.8)
        mean = mean_curve(label_curves)
        xs = [p[x_field]["mean"] for p in mean]
        ax.plot(xs, [p["acc"]["mean"] for p in mean], color=color, linewidth=2.2, marker="o", markersize=3.5,
                label=legend)
        if len(label_curves) > 1:
            ax.fill_between(xs, [p["acc"]["min"] for p in mean], [p["acc"]["max"] for p in mean], color=color,
                            alpha=0.12, linewidth=0)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def plot_step_times(step_times: Mapping[str, Sequence[Mapping[int, float]]], styles: Mapping[str, tuple[str, str]],
                    out_path: Path, title: str) -> None:
    """``timing_s/step`` per training step, one line per run (``step_times[label]``: per run, step -> seconds)."""
    plt = headless_pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, runs in step_times.items():
        legend, color = styles[label]
        for index, per_step in enumerate(runs):
            steps = sorted(per_step)
            ax.plot(steps, [per_step[s] for s in steps], color=color, linewidth=1.6, marker="o", markersize=3,
                    label=legend if index == 0 else None)
    ax.set_xlabel("training step")
    ax.set_ylabel("step time (s, timing_s/step)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
