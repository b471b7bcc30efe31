#!/usr/bin/env python
"""What one actor update of the tiny Qwen2 costs on this machine: plain torch against verl's FSDP engine.

    python scripts/bench_update.py [--groups 4] [--group-size 4] [--row-tokens 1024 2048] [--suffix 128] [--memory]

The arms and what is measured: ``verl_ext/experiments/bench/update.py``.
"""

import os

os.environ.setdefault("VERL_PLATFORM", "cpu")  # verl picks its platform when it is imported

from verl_ext.experiments.bench.update import main  # noqa: E402

if __name__ == "__main__":
    main()
