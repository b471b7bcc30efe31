"""Compare RPO runs with their full-path baseline from the metrics verl logged:

    python -m verl_ext.compare [LABEL=]RUN [LABEL=]RUN ... [--baseline LABEL] [--out DIR] [--from-step K]
                               [--val-problems SRC=N]

RUN is a verl file-logger JSONL, a tensorboard directory or a wandb run path (entity/project/run_id); runs with the
same LABEL (seeds, say) are one group. The baseline is the last label unless --baseline names another. Prints the
table, writes report.md and the plots into --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from verl_ext.compare.claims import ComparisonError, compare_runs
from verl_ext.compare.report import notes, table_rows, text_table, write_report
from verl_ext.compare.sources import RunHistory, RunSourceError, read_run


def default_label(location: str) -> str:
    """A run's name when none is given: a wandb run's id, a tensorboard directory's name, a JSONL's stem (or its
    directory's name for verl's default ``metrics.jsonl``-style names)."""
    path = Path(location)
    if path.suffix == ".jsonl" and path.stem in {"metrics", "log"}:
        return path.parent.name or path.stem
    return path.stem if path.suffix else path.name


def parse_runs(arguments: Sequence[str]) -> dict[str, list[str]]:
    """``[LABEL=]RUN`` arguments grouped by label, in the order the labels first appear."""
    groups: dict[str, list[str]] = {}
    for argument in arguments:
        label, _, location = argument.partition("=") if "=" in argument else ("", "", argument)
        if "=" in argument and not (label and location):
            raise ValueError(f"{argument!r}: expected LABEL=RUN with both parts")
        groups.setdefault(label or default_label(location), []).append(location)
    return groups


def parse_val_problems(arguments: Sequence[str]) -> dict[str, int]:
    problems = {}
    for argument in arguments:
        source, _, count = argument.partition("=")
        if not (source and count.isdigit() and int(count) > 0):
            raise ValueError(f"--val-problems {argument!r}: expected SOURCE=N, N the benchmark's number of problems")
        problems[source] = int(count)
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_ext.compare", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]RUN", help="a run; the same LABEL groups seeds")
    parser.add_argument("--baseline", help="the label the others are compared with (default: the last label)")
    parser.add_argument("--out", type=Path, default=Path("compare_report"), help="where report.md and plots go")
    parser.add_argument("--val-problems", action="append", default=[], metavar="SOURCE=N",
                        help="a benchmark's number of problems: bounds the validation's sampling noise for single runs")
    parser.add_argument("--from-step", type=int, default=1, metavar="K",
                        help="count costs from training step K on (a run's first steps may pay one-off compilation)")
    args = parser.parse_args(argv)
    try:
        locations = parse_runs(args.runs)
        val_problems = parse_val_problems(args.val_problems)
        groups: dict[str, list[RunHistory]] = {
            label: [read_run(location) for location in label_locations] for label, label_locations in locations.items()
        }
        baseline = args.baseline or list(groups)[-1]
        result = compare_runs(groups, baseline, val_problems, from_step=args.from_step)
        paths = write_report(result, groups, args.out)
    except (RunSourceError, ComparisonError, ValueError) as error:
        parser.exit(2, f"compare: {error}\n")
    header, rows = table_rows(result)
    print(text_table(header, rows))
    print("\n".join(notes(result)))
    print("\n".join(f"{name}: {path}" for name, path in paths.items()))
    return 0
