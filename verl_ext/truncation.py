"""Where to cut a cached answer, and how many new tokens the suffix rollout may generate.

Each RPO step keeps a prefix of the cached answer and regenerates only a short suffix after it. This module draws
the cut, per sample, from a seeded ``numpy`` generator, and guarantees the invariants the rest of the pipeline
relies on (design notes, verl_integration.md section 3.6), whatever the cached length:

- at least one cached token is cut, so a cached EOS is never kept inside the prefix (generation would start after
  the end of the answer);
- ``0 <= prefix_len`` and ``1 <= max_new_tokens``: every sample generates something;
- ``prefix_len + max_new_tokens <= response_budget`` (verl's ``data.max_response_length``, R), so prefix + suffix
  always fits the response tensor.

``slack`` (both modes) adds that many tokens to the suffix budget, still capped by R: the length ratchet's fix, so
that a tail-cut answer can grow back past its cached length.

Modes (``rpo.truncation.mode``) are cut policies in a registry (:func:`register_cut_policy`, :func:`get_cut_policy`),
peers the trainer never branches on; the built-in ones:

- ``"tail"`` (the authors' code): draw ``k ~ U{1..max_new_tokens}``, cut ``min(k, L)`` tokens off the end and let the
  suffix have up to ``k`` tokens, i.e. regenerate roughly what was cut. When ``k >= L`` the prefix is empty and the
  sample is a fresh answer of at most ``k`` tokens, exactly what the reference's ``answer[:-k]`` does. (The
  reference draws ``k`` from ``1..299`` for ``K=300``; here the top value ``max_new_tokens`` is included.)
- ``"uniform"``: draw the prefix length uniformly from ``[min(min_prefix, L-1), L-1]`` and let the suffix have up to
  ``max_new_tokens`` tokens. An answer no longer than ``min_prefix`` keeps all but its last token.

Edge cases:

- An answer longer than R (an offline cache built with a larger R) is treated as its first R tokens. The caller
  takes ``response_ids[:prefix_len]``, which does that clip by itself.
- An empty answer (the model stopped at once) gets ``prefix_len = 0``. In ``"tail"`` mode the suffix budget is the
  drawn ``k`` as for any other answer; in ``"uniform"`` mode it is ``max_new_tokens``; both are capped at R. It is
  *not* promoted to a full-length rollout, so a step never generates more than ``max_new_tokens`` per sample; the
  new answer replaces the empty entry after the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import numpy as np

from verl.base_config import BaseConfig

CutPolicy = Callable[[np.ndarray, "TruncationConfig", np.random.Generator], tuple[np.ndarray, np.ndarray]]
"""``policy(lengths, cfg, rng) -> (prefix_len, budget)``: for cached answers of ``lengths`` tokens (already clipped
to R), the prefix to keep (``0 <= prefix_len <= max(length - 1, 0)``) and the suffix budget before slack and the R
cap (``>= 1``), one draw per answer from ``rng``. :func:`sample_cuts` checks both bounds and applies slack and cap."""

CUT_POLICIES: dict[str, CutPolicy] = {}


def register_cut_policy(name: str) -> Callable[[CutPolicy], CutPolicy]:
    """Register a cut policy under ``rpo.truncation.mode=<name>``, as verl's ``core_algos`` registers advantage
    estimators: the policies are peers and the trainer has no branch per mode, so a user adds one without touching it.
    """

    def decorator(policy: CutPolicy) -> CutPolicy:
        if name in CUT_POLICIES and CUT_POLICIES[name] is not policy:
            raise ValueError(f"cut policy {name!r} is already registered ({CUT_POLICIES[name].__qualname__})")
        CUT_POLICIES[name] = policy
        return policy

    return decorator


def get_cut_policy(name: str) -> CutPolicy:
    """The policy registered as ``name``; a ``ValueError`` listing the registered ones otherwise."""
    if name not in CUT_POLICIES:
        raise ValueError(f"rpo.truncation.mode must be one of {sorted(CUT_POLICIES)}, got {name!r}")
    return CUT_POLICIES[name]


@dataclass(kw_only=True)
class TruncationConfig(BaseConfig):
    """``rpo.truncation`` in the recipe config (read with verl's ``omega_conf_to_dataclass``); see the module
    docstring for the modes. Frozen through verl's ``BaseConfig``."""

    mode: str = "tail"
    """A registered cut policy (:data:`CUT_POLICIES`): ``tail``, ``uniform`` or one a user registered."""
    max_new_tokens: int = 300
    """Tail: the largest number of tokens cut (and regenerated). Uniform: the suffix budget."""
    min_prefix: int = 0
    """Uniform only: the shortest prefix kept when the answer is long enough."""
    slack: int = 0
    """Tokens a suffix may generate beyond its mode's budget (always capped by ``R - prefix_len``). With the tail
    cut and no slack the suffix budget is exactly what was cut, so a cached answer can never grow longer (an answer
    that skipped a step can never get it back); a slack lets it."""

    def __post_init__(self) -> None:
        get_cut_policy(self.mode)
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"rpo.truncation.max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not _is_int(self.min_prefix) or self.min_prefix < 0:
            raise ValueError(f"rpo.truncation.min_prefix must be an integer >= 0, got {self.min_prefix!r}")
        if not _is_int(self.slack) or self.slack < 0:
            raise ValueError(f"rpo.truncation.slack must be an integer >= 0, got {self.slack!r}")
        if self.mode == "tail" and self.min_prefix != 0:
            raise ValueError(f"rpo.truncation.min_prefix={self.min_prefix} has no effect in mode 'tail' (the cut is "
                             "measured from the end); set it to 0 or use mode 'uniform'")


@dataclass(frozen=True)
class Cut:
    """Keep ``response_ids[:prefix_len]`` of the cached answer and generate at most ``max_new_tokens`` after it."""

    prefix_len: int
    max_new_tokens: int


def sample_cut(cached_len: int, response_budget: int, cfg: TruncationConfig, rng: np.random.Generator) -> Cut:
    """Draw the cut for one cached answer of ``cached_len`` tokens; same as ``sample_cuts([cached_len], ...)[0]``."""
    return sample_cuts([cached_len], response_budget, cfg, rng)[0]


def sample_cuts(lengths: Sequence[int] | np.ndarray, response_budget: int, cfg: TruncationConfig,
                rng: np.random.Generator) -> list[Cut]:
    """Draw one independent cut per cached answer, in one vectorised draw from ``rng``.

    The same generator state and inputs always give the same cuts, so a resumed run that restores the generator
    reproduces them.

    Args:
        lengths: the cached answers' lengths in tokens (non-negative integers).
        response_budget: R, verl's ``data.max_response_length``.
        cfg: the truncation config.
        rng: the generator to draw from; it is advanced by one draw per answer.

    Raises:
        ValueError: ``lengths`` is not a 1-D sequence of non-negative integers, or ``response_budget < 1``.
    """
    if not _is_int(response_budget) or response_budget < 1:
        raise ValueError(f"response_budget (data.max_response_length) must be an integer >= 1, got {response_budget!r}")
    clipped = np.minimum(_as_lengths(lengths), response_budget)
    prefix_len, budget = (np.asarray(values, dtype=np.int64) for values in get_cut_policy(cfg.mode)(clipped, cfg, rng))
    last_keepable = np.maximum(clipped - 1, 0)  # the longest prefix that still cuts one token (0 if empty)
    if prefix_len.shape != clipped.shape or budget.shape != clipped.shape:
        raise ValueError(f"cut policy {cfg.mode!r} returned shapes {prefix_len.shape} and {budget.shape} for "
                         f"{clipped.shape} answers")
    if np.any(prefix_len < 0) or np.any(prefix_len > last_keepable) or np.any(budget < 1):
        raise ValueError(f"cut policy {cfg.mode!r} broke its contract: every prefix must keep 0..length-1 tokens "
                         "(one token is always cut) and every budget must be >= 1")
    max_new_tokens = np.minimum(budget + cfg.slack, response_budget - prefix_len)
    return [Cut(int(prefix), int(new)) for prefix, new in zip(prefix_len, max_new_tokens, strict=True)]


@register_cut_policy("tail")
def tail_cut(lengths: np.ndarray, cfg: TruncationConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The authors' cut: ``k ~ U{1..max_new_tokens}`` tokens off the end, regenerate up to ``k``."""
    cut_size = rng.integers(1, cfg.max_new_tokens + 1, size=lengths.shape)
    return np.maximum(lengths - cut_size, 0), cut_size


@register_cut_policy("uniform")
def uniform_cut(lengths: np.ndarray, cfg: TruncationConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A prefix uniform over ``[min(min_prefix, L-1), L-1]``, regenerate up to ``max_new_tokens``."""
    last_keepable = np.maximum(lengths - 1, 0)
    lowest = np.minimum(cfg.min_prefix, last_keepable)
    return rng.integers(lowest, last_keepable + 1), np.full(lengths.shape, cfg.max_new_tokens)


def _as_lengths(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """``lengths`` as a 1-D int64 array, rejecting floats, negatives and nested sequences with a clear message."""
    array = np.asarray(lengths)
    if array.ndim != 1:
        raise ValueError(f"cached answer lengths must be a 1-D sequence, got an array of shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"cached answer lengths must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"cached answer lengths must be >= 0, got {int(array.min())}")
    return array


def _is_int(value: object) -> bool:
    """True for Python and numpy integers, False for bools (``True`` is not a token budget)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
