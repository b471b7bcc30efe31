"""Where to cut a cached answer, and how many new tokens the suffix rollout may generate.

Each RPO step keeps a prefix of the cached answer and regenerates only a short suffix after it. This module draws
the cut, per sample, from a seeded ``numpy`` generator, and guarantees the invariants the rest of the pipeline
relies on, whatever the cached length:

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
- ``"verified"``: the tail cut, moved earlier to the first cached token the current policy rejects (accepted with
  probability ``min(1, lenience * p_current / p_behaviour)``, SPEC-RL's check); the suffix budget is then
  ``verify_max_new_tokens`` so that the answer can be finished. It needs the current policy's log-probs of the
  cached answers (``needs_current_logprobs``), which the rollout computes once per prompt before cutting.
- ``"adaptive"`` (``verl_ext/rollout/adaptive.py``): a per-prompt depth (fraction of the answer to regenerate) kept
  in the cache entry and moved after every visit by the group's outcome, under a run-level token budget.

A policy may keep per-prompt state: registered with an ``update`` (:data:`StateUpdate`), it reads each answer's state
from :attr:`CachedAnswers.states` and the rollout stores ``update(state, outcome, cfg)`` in the prompt's entry once
the group is scored (:class:`GroupOutcome`). A policy registered ``budgeted`` keeps its regenerated tokens within
:attr:`CachedAnswers.allowance`, which the run's token budget (``verl_ext/rollout/token_budget.py``) sets.

Edge cases:

- An answer longer than R (an offline cache built with a larger R) is treated as its first R tokens. The caller
  takes ``response_ids[:prefix_len]``, which does that clip by itself.
- An empty answer (the model stopped at once) gets ``prefix_len = 0``. In ``"tail"`` mode the suffix budget is the
  drawn ``k`` as for any other answer; in ``"uniform"`` mode it is ``max_new_tokens``; both are capped at R. It is
  *not* promoted to a full-length rollout, so a tail or uniform step never generates more than ``max_new_tokens``
  (plus slack) per sample; the new answer replaces the empty entry after the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

import numpy as np

if TYPE_CHECKING:
    from verl_ext.config import TruncationConfig


@dataclass(frozen=True)
class CachedAnswers:
    """What a cut policy sees of the cached answers it cuts."""

    lengths: np.ndarray
    """Tokens per answer, already clipped to R."""
    log_ratios: Optional[tuple[Optional[np.ndarray], ...]] = None
    """Only for policies registered with ``needs_current_logprobs``: per answer, ``log p_current - log p_behaviour``
    of each of its (clipped) tokens, or None for an answer whose entry kept no real behaviour log-probs."""
    states: Optional[tuple[Optional[np.ndarray], ...]] = None
    """Per answer, its prompt's state (None before a stateful policy's first update); None: no state for any."""
    allowance: Optional[float] = None
    """Only for ``budgeted`` policies: the regenerated tokens (``length - prefix_len``, summed over the answers) the
    run's token budget allows this draw; None: no budget."""


@dataclass(frozen=True)
class GroupOutcome:
    """What a prompt's visit gave, for a stateful policy's update: how many of the group's answers were right, and
    whether the answer the prefix was cut from was right (None: unknown, e.g. a cold prompt's full rollout)."""

    right: int
    size: int
    cut_answer_right: Optional[bool]

    def __post_init__(self) -> None:
        # Read from object arrays, the flag may be a numpy bool: normalise it so policies can test it plainly.
        if self.cut_answer_right is not None:
            object.__setattr__(self, "cut_answer_right", bool(self.cut_answer_right))

    @property
    def mixed(self) -> bool:
        """Some answers right and some wrong: the group carries a learning signal."""
        return 0 < self.right < self.size


class CutDraw(NamedTuple):
    """A policy's draw for each answer: the prefix to keep, the suffix budget before slack and the R cap, and (for
    verifying policies) how many leading tokens the check accepted (-1: not verified)."""

    prefix_len: np.ndarray
    budget: np.ndarray
    accepted_len: Optional[np.ndarray] = None


CutPolicy = Callable[[CachedAnswers, "TruncationConfig", np.random.Generator], tuple]
"""``policy(answers, cfg, rng) -> (prefix_len, budget[, accepted_len])`` (a :class:`CutDraw` or a plain tuple): the
prefix to keep (``0 <= prefix_len <= max(length - 1, 0)``) and the suffix budget (``>= 1``), one draw per answer from
``rng``. :func:`sample_cuts` checks both bounds and applies slack and the R cap."""

StateUpdate = Callable[[Optional[np.ndarray], GroupOutcome, "TruncationConfig"], np.ndarray]
"""``update(state, outcome, cfg) -> new state``: a stateful policy's per-prompt state after a visit (1-D, finite)."""

CUT_POLICIES: dict[str, CutPolicy] = {}
_NEEDS_CURRENT_LOGPROBS: set[str] = set()
_STATE_UPDATES: dict[str, StateUpdate] = {}
_BUDGETED: set[str] = set()


def register_cut_policy(name: str, needs_current_logprobs: bool = False, update: Optional[StateUpdate] = None,
                        budgeted: bool = False) -> Callable[[CutPolicy], CutPolicy]:
    """Register a cut policy under ``rpo.truncation.mode=<name>``, as verl's ``core_algos`` registers advantage
    estimators: the policies are peers and the trainer has no branch per mode, so a user adds one without touching it.

    ``needs_current_logprobs``: the policy reads :attr:`CachedAnswers.log_ratios`, so the rollout runs the current
    policy over the cached answers (one pass per prompt) before cutting. ``update``: the policy keeps per-prompt
    state (:attr:`CachedAnswers.states`), moved by ``update`` after each visit. ``budgeted``: the policy honours
    :attr:`CachedAnswers.allowance` (``rpo.truncation.token_share``)."""

    def decorator(policy: CutPolicy) -> CutPolicy:
        if name in CUT_POLICIES and CUT_POLICIES[name] is not policy:
            raise ValueError(f"cut policy {name!r} is already registered ({CUT_POLICIES[name].__qualname__})")
        CUT_POLICIES[name] = policy
        if needs_current_logprobs:
            _NEEDS_CURRENT_LOGPROBS.add(name)
        if update is not None:
            _STATE_UPDATES[name] = update
        if budgeted:
            _BUDGETED.add(name)
        return policy

    return decorator


def state_update(name: str) -> Optional[StateUpdate]:
    """The per-prompt state update of cut policy ``name`` (None: a stateless policy)."""
    get_cut_policy(name)
    return _STATE_UPDATES.get(name)


def is_budgeted(name: str) -> bool:
    """Whether cut policy ``name`` honours the run's token budget."""
    get_cut_policy(name)
    return name in _BUDGETED


def needs_current_logprobs(name: str) -> bool:
    """Whether cut policy ``name`` reads the current policy's log-probs of the cached answers."""
    get_cut_policy(name)
    return name in _NEEDS_CURRENT_LOGPROBS


def get_cut_policy(name: str) -> CutPolicy:
    """The policy registered as ``name``; a ``ValueError`` listing the registered ones otherwise."""
    if name not in CUT_POLICIES:
        raise ValueError(f"rpo.truncation.mode must be one of {sorted(CUT_POLICIES)}, got {name!r}")
    return CUT_POLICIES[name]


@dataclass(frozen=True)
class Cut:
    """Keep ``response_ids[:prefix_len]`` of the cached answer and generate at most ``max_new_tokens`` after it."""

    prefix_len: int
    max_new_tokens: int
    accepted_len: int = -1
    """Verifying policies: the leading tokens the current policy accepted (-1: not verified)."""


def sample_cut(cached_len: int, response_budget: int, cfg: TruncationConfig, rng: np.random.Generator) -> Cut:
    """Draw the cut for one cached answer of ``cached_len`` tokens; same as ``sample_cuts([cached_len], ...)[0]``."""
    return sample_cuts([cached_len], response_budget, cfg, rng)[0]


def sample_cuts(lengths: Sequence[int] | np.ndarray, response_budget: int, cfg: TruncationConfig,
                rng: np.random.Generator,
                log_ratios: Optional[Sequence[Optional[np.ndarray]]] = None,
                states: Optional[Sequence[Optional[np.ndarray]]] = None,
                allowance: Optional[float] = None) -> list[Cut]:
    """Draw one independent cut per cached answer, in one vectorised draw from ``rng``.

    The same generator state and inputs always give the same cuts, so a resumed run that restores the generator
    reproduces them.

    Args:
        lengths: the cached answers' lengths in tokens (non-negative integers).
        response_budget: R, verl's ``data.max_response_length``.
        cfg: the truncation config.
        rng: the generator to draw from; it is advanced by one draw per answer (per token too when verifying).
        log_ratios: for a policy that needs them (:func:`needs_current_logprobs`), per answer ``log p_current -
            log p_behaviour`` of its tokens, None for an answer without real behaviour log-probs.
        states: for a stateful policy (:func:`state_update`), per answer its prompt's state (None: no state yet);
            None for all.
        allowance: for a budgeted policy (:func:`is_budgeted`), the regenerated tokens the run's budget allows.

    Raises:
        ValueError: ``lengths`` is not a 1-D sequence of non-negative integers, or ``response_budget < 1``, or a
            verifying policy got no (or mis-sized) ``log_ratios``.
    """
    if not _is_int(response_budget) or response_budget < 1:
        raise ValueError(f"response_budget (data.max_response_length) must be an integer >= 1, got {response_budget!r}")
    clipped = np.minimum(_as_lengths(lengths), response_budget)
    if states is not None and len(states) != len(clipped):
        raise ValueError(f"sample_cuts: {len(states)} states for {len(clipped)} answers")
    answers = CachedAnswers(clipped, _clipped_log_ratios(log_ratios, clipped, cfg.mode),
                            None if states is None else tuple(states), allowance if is_budgeted(cfg.mode) else None)
    draw = CutDraw(*get_cut_policy(cfg.mode)(answers, cfg, rng))
    prefix_len, budget = (np.asarray(values, dtype=np.int64) for values in draw[:2])
    accepted = np.full(clipped.shape, -1) if draw.accepted_len is None else np.asarray(draw.accepted_len)
    last_keepable = np.maximum(clipped - 1, 0)  # the longest prefix that still cuts one token (0 if empty)
    if prefix_len.shape != clipped.shape or budget.shape != clipped.shape:
        raise ValueError(f"cut policy {cfg.mode!r} returned shapes {prefix_len.shape} and {budget.shape} for "
                         f"{clipped.shape} answers")
    if np.any(prefix_len < 0) or np.any(prefix_len > last_keepable) or np.any(budget < 1):
        raise ValueError(f"cut policy {cfg.mode!r} broke its contract: every prefix must keep 0..length-1 tokens "
                         "(one token is always cut) and every budget must be >= 1")
    max_new_tokens = np.minimum(budget + cfg.slack, response_budget - prefix_len)
    return [Cut(int(prefix), int(new), int(acc))
            for prefix, new, acc in zip(prefix_len, max_new_tokens, accepted, strict=True)]


def _clipped_log_ratios(log_ratios: Optional[Sequence[Optional[np.ndarray]]], lengths: np.ndarray,
                        mode: str) -> Optional[tuple[Optional[np.ndarray], ...]]:
    if not needs_current_logprobs(mode):
        return None
    if log_ratios is None or len(log_ratios) != len(lengths):
        raise ValueError(f"cut policy {mode!r} verifies cached answers: it needs one log-ratio array (or None) per "
                         f"answer, got {None if log_ratios is None else len(log_ratios)} for {len(lengths)} answers")
    clipped = []
    for ratios, length in zip(log_ratios, lengths, strict=True):
        if ratios is not None and len(ratios) < length:
            raise ValueError(f"cut policy {mode!r}: {len(ratios)} log-ratios for an answer of {length} tokens")
        clipped.append(None if ratios is None else np.asarray(ratios[:length], dtype=np.float64))
    return tuple(clipped)


@register_cut_policy("tail")
def tail_cut(answers: CachedAnswers, cfg: TruncationConfig, rng: np.random.Generator) -> CutDraw:
    """The authors' cut: ``k ~ U{1..max_new_tokens}`` tokens off the end, regenerate up to ``k``."""
    cut_size = rng.integers(1, cfg.max_new_tokens + 1, size=answers.lengths.shape)
    return CutDraw(np.maximum(answers.lengths - cut_size, 0), cut_size)


@register_cut_policy("uniform")
def uniform_cut(answers: CachedAnswers, cfg: TruncationConfig, rng: np.random.Generator) -> CutDraw:
    """A prefix uniform over ``[min(min_prefix, L-1), L-1]``, regenerate up to ``max_new_tokens``."""
    last_keepable = np.maximum(answers.lengths - 1, 0)
    lowest = np.minimum(cfg.min_prefix, last_keepable)
    return CutDraw(rng.integers(lowest, last_keepable + 1), np.full(answers.lengths.shape, cfg.max_new_tokens))


def accepted_length(log_ratio: np.ndarray, lenience: float, uniforms: np.ndarray) -> int:
    """Leading tokens accepted by the draws: token t is accepted when ``u_t < lenience * exp(log_ratio_t)`` (i.e.
    with probability ``min(1, lenience * p_current / p_behaviour)``); the first rejection ends the run."""
    with np.errstate(over="ignore"):
        rejected = np.nonzero(uniforms >= lenience * np.exp(log_ratio))[0]
    return int(rejected[0]) if rejected.size else len(log_ratio)


@register_cut_policy("verified", needs_current_logprobs=True)
def verified_cut(answers: CachedAnswers, cfg: TruncationConfig, rng: np.random.Generator) -> CutDraw:
    """SPEC-RL's check on RPO's budgeted cut: the prefix is the earlier of the tail cut ``L - k`` and the first
    cached token the current policy rejects; the suffix may then run to ``verify_max_new_tokens`` (capped by R) so
    that an answer cut early can be finished. The tail draw comes first, so with an infinite lenience the cuts are
    the tail cut's. An answer without real behaviour log-probs keeps the plain tail cut (``accepted_len`` -1)."""
    tail_prefix, tail_budget, _ = tail_cut(answers, cfg, rng)
    prefix, budget = tail_prefix.copy(), tail_budget.copy()
    accepted = np.full(answers.lengths.shape, -1, dtype=np.int64)
    for i, ratios in enumerate(answers.log_ratios):
        if ratios is None:
            continue
        accepted[i] = accepted_length(ratios, cfg.lenience, rng.random(len(ratios)))
        prefix[i] = min(tail_prefix[i], accepted[i])
        budget[i] = cfg.verify_max_new_tokens
    return CutDraw(prefix, budget, accepted)


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
