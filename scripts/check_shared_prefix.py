"""Shared-prefix exactness on a tiny random model of each supported family, on the device given.

    python scripts/check_shared_prefix.py --device cpu|cuda

Prints, per model, the largest differences between the per-row forward/backward and the packed, grouped one
(log-probs and entropy absolute, gradients relative to each parameter's largest gradient) and exits non-zero when
any exceeds the tolerance. Needs torch and transformers only (no verl), so it runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from verl_ext.experiments.shared_prefix_check import TINY_MODELS, run_check  # noqa: E402

TOLERANCE = 1e-5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {name}, float32, tolerance {TOLERANCE:g}")
    worst = 0.0
    for model in TINY_MODELS:
        for seed in range(args.seeds):
            result = run_check(model, args.device, seed=seed)
            worst = max(worst, result.logprob_max_abs, result.entropy_max_abs, result.grad_max_rel)
            print(f"  {model:6s} seed {seed}: {result.row_tokens} row tokens packed into {result.packed_tokens}; "
                  f"max |dlogp| {result.logprob_max_abs:.2e}  max |dentropy| {result.entropy_max_abs:.2e}  "
                  f"max grad rel {result.grad_max_rel:.2e}")
    print(f"worst {worst:.2e}: {'PASS' if worst <= TOLERANCE else 'FAIL'}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
