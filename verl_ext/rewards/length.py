"""Cosine length reward: shorter responses earn more, correct ones always more than wrong ones.

``r = lo + (hi - lo) * (1 + cos(pi * min(n, L) / L)) / 2`` over the response length ``n`` in characters: ``hi`` for an
empty response, falling along a half cosine to ``lo`` at ``L`` characters. Defaults are open-r1's script defaults
that the RPO reference uses: correct 1.0 -> 0.5, wrong 0.0 -> -0.5, ``L`` = 1000.

The reference does not clamp ``n / L``; past ``L`` the cosine turns and the reward rises again, so a 2000-character
answer would score like an empty one. Here the length is clamped: every response of ``L`` characters or more
gets ``lo``.
"""

from __future__ import annotations

import math


def cosine_length_reward(
    length: int,
    correct: bool,
    *,
    max_len: int = 1000,
    correct_max: float = 1.0,
    correct_min: float = 0.5,
    wrong_max: float = 0.0,
    wrong_min: float = -0.5,
) -> float:
    """Reward for a response of ``length`` characters; ``correct`` picks the (max, min) pair it falls between."""
    if max_len <= 0:
        raise ValueError(f"cosine_length_reward: max_len must be positive, got {max_len}")
    if length < 0:
        raise ValueError(f"cosine_length_reward: length must be >= 0, got {length}")
    hi, lo = (correct_max, correct_min) if correct else (wrong_max, wrong_min)
    progress = min(length, max_len) / max_len
    return lo + (hi - lo) * (1.0 + math.cos(math.pi * progress)) / 2.0
