#!/usr/bin/env python
"""Rollout cost of RPO against the full path, measured through the recipe's own trainer and rollout engine.

    python scripts/bench_rollout.py --response-length 2048 --suffix-budget 256 --json OUT.json

Options and what is measured: ``python scripts/bench_rollout.py --help`` and ``verl_ext/experiments/bench/rollout.py``.
"""

import sys

from verl_ext.experiments.bench.rollout import main

if __name__ == "__main__":
    sys.exit(main())
