"""Every ``rpo.*`` option: the recipe's ``rpo:`` config block as verl config dataclasses, and the checks of what RPO
supports.

One source of truth, as verl's own config groups: the dataclasses below hold the defaults and the validation;
``recipe/rpo/config/rpo_defaults.yaml`` names them with ``_target_`` and repeats the defaults for users to read and
edit (a test checks that both agree). :func:`load_rpo_config` reads the block with verl's ``omega_conf_to_dataclass``,
which rejects unknown keys and ill-typed values; every error names the full ``rpo.*`` key. Every option is documented
in recipe/rpo/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, Mapping, Optional, get_args

import numpy as np
from omegaconf.errors import OmegaConfBaseException
from verl.base_config import BaseConfig
from verl.utils.config import omega_conf_to_dataclass

import verl_ext.rollout.adaptive  # noqa: F401  (registers the "adaptive" cut policy)
from verl_ext.cache.keys import check_key_mode
from verl_ext.cache.replacement import get_replacement_policy
from verl_ext.rollout.cold_start import get_cold_start
from verl_ext.rollout.truncation import get_cut_policy, is_budgeted, needs_current_logprobs

SelectionMetric = Literal["score", "acc"]
SELECTION_METRICS: tuple[str, ...] = get_args(SelectionMetric)


@dataclass(kw_only=True)
class ReplacementConfig(BaseConfig):
    """The replacement rule's part of ``rpo.cache`` (:class:`CacheConfig` extends it with the
    cache's other options, so the YAML keys and these fields are the same names). Frozen through verl's
    ``BaseConfig``."""

    select_metric: str = "score"
    """What "best" means: the reward score, or accuracy (True above False/None); one of :data:`SELECTION_METRICS`."""
    p_best: float = 0.5
    """Probability of taking the best member; otherwise a uniform draw among the candidates."""
    correct_only: bool = False
    """Only members with ``acc=True`` are candidates; no correct member keeps the old entry."""
    replacement: str = "p_best"
    """A registered replacement policy (``REPLACEMENT_POLICIES`` in ``verl_ext/cache/replacement.py``)."""

    def __post_init__(self) -> None:
        get_replacement_policy(self.replacement)
        if isinstance(self.p_best, bool) or not isinstance(self.p_best, (int, float)) or not 0.0 <= self.p_best <= 1.0:
            raise ValueError(f"rpo.cache.p_best must be a number in [0, 1], got {self.p_best!r}")
        if self.select_metric not in SELECTION_METRICS:
            raise ValueError(f"rpo.cache.select_metric must be one of {list(SELECTION_METRICS)}, "
                             f"got {self.select_metric!r}")


VERIFY_LENIENCE = float(np.exp(0.5))
"""SPEC-RL's lenience for GRPO (e^0.3 for PPO, e^0.15 for DAPO)."""


ADAPTIVE_ONLY = ("depth_init", "depth_min", "depth_factor")
"""``rpo.truncation`` options that only the adaptive cut reads."""


@dataclass(kw_only=True)
class TruncationConfig(BaseConfig):
    """``rpo.truncation`` in the recipe config (read with verl's ``omega_conf_to_dataclass``); see
    ``verl_ext/rollout/truncation.py`` for the modes. Frozen through verl's ``BaseConfig``."""

    mode: str = "tail"
    """A registered cut policy (``CUT_POLICIES`` in ``verl_ext/rollout/truncation.py``): ``tail``, ``uniform`` or one a
    user registered."""
    max_new_tokens: int = 300
    """Tail: the largest number of tokens cut (and regenerated). Uniform: the suffix budget."""
    min_prefix: int = 0
    """Uniform only: the shortest prefix kept when the answer is long enough."""
    slack: int = 0
    """Tokens a suffix may generate beyond its mode's budget (always capped by ``R - prefix_len``). With the tail
    cut and no slack the suffix budget is exactly what was cut, so a cached answer can never grow longer (an answer
    that skipped a step can never get it back); a slack lets it."""
    lenience: float = VERIFY_LENIENCE
    """Verified only: a cached token is accepted with probability ``min(1, lenience * p_current / p_behaviour)``
    (SPEC-RL's lenience; e^0.5 as for GRPO there; ``.inf`` accepts every token, i.e. the tail cut)."""
    verify_max_new_tokens: int = 1024
    """Verified only: the suffix budget, so that a suffix cut early can finish the answer (capped by ``R - prefix``)."""
    depth_init: float = 0.25
    """Adaptive only: a prompt's first depth, the fraction of its answer to regenerate."""
    depth_min: float = 0.02
    """Adaptive only: the smallest depth a prompt moves to."""
    depth_factor: float = 2.0
    """Adaptive only: a group that scored all alike multiplies or divides its prompt's depth by this."""
    token_share: Optional[float] = None
    """Policies that honour a budget (adaptive): the run steers its generated tokens toward at most this share of the
    full path's estimate (a target, not a bound: ``verl_ext/rollout/token_budget.py``); None: no budget."""

    def __post_init__(self) -> None:
        get_cut_policy(self.mode)
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise ValueError(f"rpo.truncation.max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not _is_int(self.min_prefix) or self.min_prefix < 0:
            raise ValueError(f"rpo.truncation.min_prefix must be an integer >= 0, got {self.min_prefix!r}")
        if not _is_int(self.slack) or self.slack < 0:
            raise ValueError(f"rpo.truncation.slack must be an integer >= 0, got {self.slack!r}")
        if not isinstance(self.lenience, (int, float)) or isinstance(self.lenience, bool) or not self.lenience >= 1:
            raise ValueError(f"rpo.truncation.lenience must be a number >= 1 (.inf allowed), got {self.lenience!r}")
        if not _is_int(self.verify_max_new_tokens) or self.verify_max_new_tokens < 1:
            raise ValueError(
                f"rpo.truncation.verify_max_new_tokens must be an integer >= 1, got {self.verify_max_new_tokens!r}"
            )
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   for v in (self.depth_init, self.depth_min, self.depth_factor)) \
                or not 0.0 < self.depth_min <= self.depth_init <= 1.0 or not self.depth_factor > 1.0:
            raise ValueError(
                "rpo.truncation: need 0 < depth_min <= depth_init <= 1 and depth_factor > 1, got depth_min="
                f"{self.depth_min!r}, depth_init={self.depth_init!r}, depth_factor={self.depth_factor!r}"
            )
        changed = [f.name for f in fields(self) if f.name in ADAPTIVE_ONLY and getattr(self, f.name) != f.default]
        if changed and self.mode != "adaptive":
            raise ValueError(f"rpo.truncation.{changed[0]} has no effect in mode {self.mode!r}; it sets the "
                             "adaptive cut: leave it at its default or use mode 'adaptive'")
        if self.token_share is not None:
            if isinstance(self.token_share, bool) or not isinstance(self.token_share, (int, float)) \
                    or not 0.0 < self.token_share <= 1.0:
                raise ValueError(f"rpo.truncation.token_share must be a number in (0, 1] or null, got "
                                 f"{self.token_share!r}")
            if not is_budgeted(self.mode):
                raise ValueError(f"rpo.truncation.token_share={self.token_share} has no effect in mode "
                                 f"{self.mode!r}, which ignores the token budget; set it to null or use a budgeted "
                                 "mode (adaptive)")
        if self.mode == "tail" and self.min_prefix != 0:
            raise ValueError(
                f"rpo.truncation.min_prefix={self.min_prefix} has no effect in mode 'tail' (the cut is "
                "measured from the end); set it to 0 or use mode 'uniform'"
            )


def _is_int(value: object) -> bool:
    """True for Python and numpy integers, False for bools (``True`` is not a token budget)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(kw_only=True)
class CacheConfig(ReplacementConfig):
    """``rpo.cache``: the cache's keys, updates, stored log-probs and warm start, plus the replacement rule
    (``select_metric``, ``p_best``, ``correct_only``, inherited from :class:`ReplacementConfig`)."""

    key: str = "index"
    """index: data_source + extra_info.index; content: a hash of the prompt messages."""
    update: bool = True
    """False keeps the initial cache fixed."""
    store_logprobs: bool = False
    """Keep each entry's behaviour log-probs (needed to train on the prefix with rollout correction)."""
    init_path: Optional[str] = None
    """An offline cache file (data_prep/build_cache.py) to start from; None seeds online."""
    refresh_prob: float = 0.0
    """Probability, per visit, of replacing a prompt's cached answer by a fresh full answer before cutting."""
    refresh_after: int = 0
    """Refresh an answer once it has been reused this many RPO steps since it was last generated in full; 0: never."""
    refresh_all_wrong: bool = False
    """Refresh a prompt's answer at the visit after its group scored all wrong."""
    keep_counterpart: bool = False
    """Keep, besides the entry's answer, the prompt's latest answer of the other correctness (needs a reward that
    reports ``acc``), and cut from it with probability ``counterpart_prob``."""
    counterpart_prob: float = 0.5
    """With ``keep_counterpart``: the probability that a prompt holding both answers is cut from the counterpart."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("refresh_prob", "counterpart_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"rpo.cache.{name} must be a number in [0, 1], got {value!r}")
        if not _is_int(self.refresh_after) or self.refresh_after < 0:
            raise ValueError(f"rpo.cache.refresh_after must be an integer >= 0, got {self.refresh_after!r}")
        try:
            check_key_mode(self.key)
        except ValueError as error:
            raise ValueError(f"rpo.cache.key: {error}") from None


@dataclass(kw_only=True)
class RPOConfig(BaseConfig):
    """The ``rpo:`` block of the recipe config."""

    enable: bool = True
    seed: int = 42
    loss_on_prefix: bool = False
    shared_prefix: bool = True
    """Compute each group's shared part (prompt + cached prefix; the prompt on the full path) once in the
    log-prob, reference and update passes (verl_ext.shared_prefix); exact, see recipe/rpo/README.md."""
    cold_start: str = "seed_then_partial"
    """A registered cold-start policy (``COLD_START_POLICIES`` in ``verl_ext/rollout/cold_start.py``)."""
    truncation: TruncationConfig = field(default_factory=TruncationConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)

    def __post_init__(self) -> None:
        get_cold_start(self.cold_start)


def load_rpo_config(block: Optional[Mapping[str, Any]]) -> RPOConfig:
    """Read the ``rpo:`` block (a DictConfig or a plain mapping; None or empty gives the defaults).

    Raises:
        ValueError: an unknown key or an ill-typed value, naming the full ``rpo.*`` key, or a value the
            dataclasses' own checks refuse."""
    try:
        return omega_conf_to_dataclass(block or {}, dataclass_type=RPOConfig)
    except OmegaConfBaseException as error:
        key = str(getattr(error, "full_key", None) or "").removeprefix("rpo.")
        reason = (getattr(error, "msg", None) or str(error)).splitlines()[0]
        raise ValueError(f"rpo.{key}: {reason}" if key else f"rpo: {reason}") from None


UNSUPPORTED_ADV_ESTIMATORS = ("remax", "gae")


def prefix_logprobs_required(config: Any, rpo: RPOConfig) -> bool:
    """True when the loss compares cached-prefix tokens against their behaviour log-probs: the prefix is in the loss
    and verl's rollout correction is on (importance weights or rejection in decoupled mode, or bypass mode, where
    the behaviour log-probs are the PPO ratio's old log-probs)."""
    correction = config.algorithm.get("rollout_correction", None)
    if not rpo.enable or not rpo.loss_on_prefix or correction is None:
        return False
    return bool(
        correction.get("bypass_mode", False) or correction.get("rollout_is", None) or correction.get("rollout_rs", None)
    )


def check_supported(config: Any, rpo: RPOConfig) -> None:
    """Fail fast on set-ups RPO does not support yet, naming the option to change.

    Multi-turn/tool agents: the cached answer would interleave tool outputs the prefix cannot replay. REMAX needs a
    greedy full-length baseline per prompt; GAE's critic would value stale prefix tokens."""
    if not rpo.enable:
        return
    rollout = config.actor_rollout_ref.rollout
    if rollout.multi_turn.get("enable", False):
        raise ValueError("rpo.enable=true does not support actor_rollout_ref.rollout.multi_turn.enable=true yet")
    estimator = str(config.algorithm.adv_estimator)
    if estimator in UNSUPPORTED_ADV_ESTIMATORS:
        raise ValueError(
            f"rpo.enable=true does not support algorithm.adv_estimator={estimator} yet; use a group estimator "
            "such as grpo"
        )
    if prefix_logprobs_required(config, rpo) and not rpo.cache.store_logprobs:
        raise ValueError(
            "rpo.loss_on_prefix=true with algorithm.rollout_correction (rollout_is, rollout_rs or bypass_mode set) "
            "compares the cached prefix against its behaviour log-probs, which the cache keeps only with "
            "rpo.cache.store_logprobs=true; without them every prefix token would be compared with a 0.0 stand-in "
            "(sequence weights ~0, token weights = the probability itself). Set rpo.cache.store_logprobs=true "
            "(and build an offline cache with --store-logprobs) or rpo.loss_on_prefix=false"
        )
    if needs_current_logprobs(rpo.truncation.mode) and not rpo.cache.store_logprobs:
        raise ValueError(
            f"rpo.truncation.mode={rpo.truncation.mode} compares each cached token's current probability with its "
            "behaviour probability, which the cache keeps only with rpo.cache.store_logprobs=true (and "
            "actor_rollout_ref.rollout.calculate_log_probs=true); set both"
        )
    if rpo.cache.store_logprobs and not rollout.get("calculate_log_probs", False):
        raise ValueError(
            "rpo.cache.store_logprobs=true needs actor_rollout_ref.rollout.calculate_log_probs=true: the engine "
            "returns no log-probs to store otherwise"
        )
    response_length = int(config.data.max_response_length)
    if rpo.truncation.max_new_tokens > response_length:
        raise ValueError(
            f"rpo.truncation.max_new_tokens={rpo.truncation.max_new_tokens} exceeds "
            f"data.max_response_length={response_length}"
        )
