"""A run's summary a person reads in ten seconds, from verl's file-logger metrics: what the demo prints last.

    python -m verl_ext.experiments.run_summary METRICS.jsonl [--tensorboard DIR] [--checkpoints DIR]

Steps trained, tokens generated against the full-path estimate (``rpo/full_rollout_tokens_est``), the cache hit rate
per step, validation accuracy before and after, and where the metrics are.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from verl_ext.compare.file_logger import read_metrics, val_accuracy


def summary_lines(by_step: dict[int, dict], where: dict[str, Path]) -> list[str]:
    """The summary of a run's metrics (:func:`verl_ext.compare.file_logger.read_metrics`); ``where`` names files to
    show."""
    train = {step: data for step, data in by_step.items() if "training/global_step" in data}
    if not train:
        raise ValueError("no training step in the metrics: the run stopped before its first step")
    generated = sum(float(data.get("rpo/generated_tokens", 0.0)) for data in train.values())
    lines = [f"RPO run summary: {len(train)} training steps"]
    estimate = sum(float(data.get("rpo/full_rollout_tokens_est", 0.0)) for data in train.values())
    if estimate > 0:
        lines.append(
            f"  generated tokens   {generated:,.0f} of a full-path estimate of {estimate:,.0f} "
            f"({generated / estimate:.0%}; {1 - generated / estimate:.0%} saved)"
        )
    else:
        lines.append(f"  generated tokens   {generated:,.0f} (full path: rpo.enable=false)")
    hits = [float(data["rpo/cache_hit_rate"]) for data in train.values() if "rpo/cache_hit_rate" in data]
    if hits:
        per_step = " ".join(f"{hit:.2f}" for hit in hits)
        lines.append(f"  cache hit rate     {per_step}  (per step; 1.00: suffixes only)")
    validated = [(step, acc) for step, data in by_step.items() if (acc := val_accuracy(data)) is not None]
    if validated:
        (first_step, first), (last_step, last) = validated[0], validated[-1]
        lines.append(f"  val accuracy       {first:.3f} at step {first_step} -> {last:.3f} at step {last_step}")
    lines.extend(f"  {name:<18} {path}" for name, path in where.items())
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path, help="verl's file-logger JSONL (VERL_FILE_LOGGER_PATH)")
    parser.add_argument("--tensorboard", type=Path, help="the run's tensorboard directory (TENSORBOARD_DIR)")
    parser.add_argument("--checkpoints", type=Path, help="trainer.default_local_dir")
    args = parser.parse_args(argv)
    where = {"metrics": args.metrics, "tensorboard": args.tensorboard, "checkpoints": args.checkpoints}
    try:
        lines = summary_lines(read_metrics(args.metrics), {k: v for k, v in where.items() if v is not None})
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"run_summary: {error}\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
