#!/usr/bin/env python
"""Does RPO learn? The learning testbed's command line; the logic is the package :mod:`verl_ext.experiments.learning`.

    python scripts/learning_experiment.py [--arms full rpo adaptive ...] [--seeds 0 1 2 3 4] [--resume] [--replot]
"""

import sys

from verl_ext.experiments.learning.cli import main

if __name__ == "__main__":
    sys.exit(main())
