"""Compare RPO runs with their full-path baseline: a thin command line over verl_ext/compare/cli.py.

    python scripts/compare_runs.py rpo=RPO_RUN full=BASELINE_RUN [--out DIR]
"""

from verl_ext.compare.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
