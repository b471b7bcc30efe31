#!/usr/bin/env python
"""Prepare one hub math data set as a verl RL parquet, prompted with the RPO system prompt.

    python data_prep/prepare.py open_rs --out-dir ~/data/rpo
    python data_prep/prepare.py aime2024 --local-path /copies/aime_2024      # a local copy in the hub's layout
    python data_prep/prepare.py dapo_math_17k --max-samples 64               # a quick run
    python data_prep/prepare.py --list

Writes ``<out-dir>/<name>.parquet`` for the data set's default split (``train`` for training sets, ``test`` for
evaluation sets) and ``<out-dir>/<name>_<split>.parquet`` for another split. The mapping of each data set lives in
``verl_ext/data_prep/specs.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from verl_ext.data_prep import REGISTRY, get_spec, prepare, write_parquet
from verl_ext.data_prep.prompts import SYSTEM_PROMPT

DEFAULT_OUT_DIR = Path("~/data/rpo")


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(
        f"  {spec.name:15} {spec.hub_id:41} splits {'/'.join(spec.splits)}: {spec.description}"
        for spec in REGISTRY.values()
    )
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        epilog=f"data sets:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", nargs="?", choices=sorted(REGISTRY), metavar="DATASET", help="a name listed below")
    parser.add_argument("--list", action="store_true", help="list the data sets and exit")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help=f"default: {DEFAULT_OUT_DIR}")
    parser.add_argument("--split", help="the data set's split to prepare (default: its first one, see below)")
    parser.add_argument(
        "--local-path",
        type=Path,
        help="read a local copy instead of the hub: a .parquet/.jsonl/.json file, or a directory laid out like the "
        "hub repository",
    )
    parser.add_argument("--max-samples", type=int, help="keep only the first N rows (after deduplication)")
    parser.add_argument(
        "--no-system-prompt", action="store_true", help="put only the problem into the prompt (no system turn)"
    )
    return parser


def output_path(out_dir: Path, name: str, split: str, default_split: str) -> Path:
    """``<name>.parquet`` for the default split, ``<name>_<split>.parquet`` for any other."""
    stem = name if split == default_split else f"{name}_{split}"
    return out_dir.expanduser() / f"{stem}.parquet"


def main(argv: list[str] | None = None) -> Path | None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(parser.epilog)
        return None
    if args.dataset is None:
        parser.error("a DATASET is required (or --list)")
    spec = get_spec(args.dataset)
    split = args.split or spec.default_split
    if split not in spec.splits:
        parser.error(f"{spec.name} has splits {sorted(spec.splits)}, not {split!r}")
    table, stats = prepare(
        spec,
        split,
        local_path=args.local_path,
        max_samples=args.max_samples,
        system_prompt=None if args.no_system_prompt else SYSTEM_PROMPT,
    )
    path = write_parquet(table, output_path(args.out_dir, spec.name, split, spec.default_split))
    warning = "WARNING: " if stats.has_problems else ""
    print(f"{warning}{spec.name} [{split}] -> {path}: {stats.summary()}", file=sys.stderr)
    return path


if __name__ == "__main__":
    main()
