"""Shared-prefix exactness on a tiny random model of each supported family, on the device and attention given.

    python scripts/check_shared_prefix.py --device cpu|cuda --attn sdpa|flash_attention_2 [--reference-kernel]

Prints, per model, the largest differences between the per-row forward/backward and the packed, grouped one
(log-probs and entropy absolute, gradients relative to each parameter's largest gradient) and the time of both
paths, and exits non-zero when any difference exceeds the tolerance. Needs torch and transformers only (no verl),
plus flash-attn for ``--attn flash_attention_2`` on CUDA; ``--reference-kernel`` runs the flash layout through its
pure-torch reference kernel instead (any device). The library side: verl_ext/experiments/shared_prefix_check.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verl_ext.experiments.shared_prefix_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
