"""What the compare tool prints and writes: one table (a terminal rendering and a markdown one, built from the same
rows), ``report.md`` and the plots of :mod:`verl_ext.compare.plots`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from verl_ext.compare.claims import COST_METRICS, STEP_TIME, TOKENS, Interval, label_mean
from verl_ext.compare.curves import run_curve
from verl_ext.compare.plots import plot_accuracy, plot_step_times
from verl_ext.compare.sources import RunHistory

PLOTS = {
    "accuracy_vs_wallclock": "accuracy_vs_wallclock.png",
    "accuracy_vs_generated_tokens": "accuracy_vs_generated_tokens.png",
    "step_time": "step_time.png",
}


def _number(value: Optional[float], digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"


def _interval(interval: Optional[Interval]) -> str:
    return "" if interval is None else f" [{interval.low:+.3f}, {interval.high:+.3f}]"


def table_rows(result: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per label its value (the mean of its runs), per other label its ratio or difference to the
    baseline."""
    labels, baseline = result["labels"], result["baseline"]
    others = [label for label in labels if label != baseline]
    counts = {label: len(runs) for label, runs in result["runs"].items()}
    header = ["", *(f"{label} ({counts[label]} runs)" if counts[label] > 1 else label for label in labels),
              *(f"{label}/{baseline}" for label in others)]
    steps = result["steps"]
    rows = []

    def ratio_row(name: str, figures: Mapping[str, Any], digits: int) -> list[str]:
        return [name, *(_number(figures["mean"][label], digits) for label in labels),
                *(_number(figures["ratio"].get(label), 2) for label in others)]

    for metric, name in COST_METRICS.items():
        digits = 0 if metric == TOKENS else 1
        rows.append(ratio_row(f"{name}, steps {steps[0]}-{steps[-1]}", result["costs"][metric], digits))
    rows.append(ratio_row("response length (mean)", result["response_length"], 1))
    time, step_counts = result["training_time"], result["training_time"]["steps"]
    rows.append([f"training time (s, each run's steps from {steps[0]})",
                 *(f"{time['mean'][label]:.1f} ({'/'.join(map(str, step_counts[label]))} steps)" for label in labels),
                 *(_number(time["ratio"].get(label), 2) for label in others)])
    validation = result["validation"]
    for source, bench in validation["benchmarks"].items():
        name = f"val {source} mean@{bench['samples']}"
        rows.append(_difference_row(f"{name}, step {validation['last_step']}", bench["last"], labels, others))
        if bench["over_run"] is not None:
            trained = validation["trained_steps"]
            rows.append(_difference_row(f"{name}, mean of steps {trained[0]}-{trained[-1]}", bench["over_run"],
                                        labels, others))
    for metric, figures in result["diagnostics"].items():
        values = figures["values"]
        rows.append([metric, *(_number(label_mean(values[label]), 3) for label in labels), *("" for _ in others)])
    return header, rows


def _difference_row(name: str, figures: Mapping[str, Any], labels: Sequence[str], others: Sequence[str]) -> list[str]:
    return [name, *(f"{figures['mean'][label]:.3f}" for label in labels),
            *(f"{figures['difference'][label]['diff']:+.3f}{_interval(figures['difference'][label]['interval'])}"
              for label in others)]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths, strict=True))) for row in [header, *rows]]
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def notes(result: Mapping[str, Any]) -> list[str]:
    """How to read the table: which runs, what the interval is, what a missing value means."""
    lines = [f"{label}: {', '.join(runs)}" for label, runs in result["runs"].items()]
    intervals = {d["interval"].method for bench in result["validation"]["benchmarks"].values()
                 for part in ("last", "over_run") if bench[part] is not None
                 for d in bench[part]["difference"].values() if d["interval"] is not None}
    if intervals:
        lines.append(f"[low, high]: 95% interval of the difference ({'; '.join(sorted(intervals))}).")
    else:
        lines.append("No interval: one run per label; give seeds as more runs with the same label, or "
                     "--val-problems for the validation's sampling noise.")
    lines.append("Costs add up each run's values over the training steps every run has; n/a: not logged by a run.")
    return lines


def write_report(result: Mapping[str, Any], groups: Mapping[str, Sequence[RunHistory]], out: Path) -> dict[str, Path]:
    """``report.md`` and the plots in ``out``; returns their paths. The accuracy plots count costs from the table's
    first step, as the table does."""
    out.mkdir(parents=True, exist_ok=True)
    colors = {label: f"C{index}" for index, label in enumerate(groups)}
    styles = {label: (f"{label} ({len(runs)} runs)" if len(runs) > 1 else label, colors[label])
              for label, runs in groups.items()}
    first = result["steps"][0]
    curves = {label: [run_curve(run.by_step, from_step=first) for run in runs] for label, runs in groups.items()}
    paths = {name: out / file for name, file in PLOTS.items()}
    plot_accuracy(curves, styles, "wall_s", "training wall-clock (s, sum of timing_s/step)", "val accuracy",
                  paths["accuracy_vs_wallclock"], "Validation accuracy vs training wall-clock")
    plot_accuracy(curves, styles, "generated_tokens", "generated tokens (cumulative, rpo/generated_tokens)",
                  "val accuracy", paths["accuracy_vs_generated_tokens"], "Validation accuracy vs generated tokens")
    # Every step, the ones left out of the costs included: the plot shows what --from-step leaves out.
    step_times = {label: [{s: d[STEP_TIME] for s, d in run.by_step.items() if s > 0 and STEP_TIME in d}
                          for run in runs] for label, runs in groups.items()}
    plot_step_times(step_times, styles, paths["step_time"], "Step time per training step")
    header, rows = table_rows(result)
    text = "\n".join([f"# {' vs '.join(result['labels'])}", "", markdown_table(header, rows), "",
                      *(f"- {line}" for line in notes(result)), "",
                      *(f"![{name}]({path.name})" for name, path in paths.items())])
    paths["report"] = out / "report.md"
    paths["report"].write_text(text + "\n")
    return paths
