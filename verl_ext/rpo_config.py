"""The recipe's ``rpo:`` config block as a validated dataclass, and the checks of what RPO supports.

Every option is documented in recipe/rpo/README.md; the defaults here are the recipe YAML's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional

from .keys import KeyMode, check_key_mode
from .selection import ReplacementConfig
from .truncation import TruncationConfig

ColdStart = Literal["seed_then_partial", "full_group"]
COLD_START_MODES: tuple[str, ...] = ("seed_then_partial", "full_group")


@dataclass(frozen=True)
class CacheOptions:
    key: KeyMode = "index"
    update: bool = True
    store_logprobs: bool = False
    init_path: Optional[str] = None
    replacement: ReplacementConfig = field(default_factory=ReplacementConfig)


@dataclass(frozen=True)
class RPOConfig:
    enable: bool = True
    seed: int = 42
    loss_on_prefix: bool = False
    cold_start: ColdStart = "seed_then_partial"
    truncation: TruncationConfig = field(default_factory=TruncationConfig)
    cache: CacheOptions = field(default_factory=CacheOptions)

    @classmethod
    def from_mapping(cls, block: Optional[Mapping[str, Any]]) -> "RPOConfig":
        """Build from the ``rpo:`` block of the hydra config; unknown keys are errors (typos must not pass)."""
        block = dict(block or {})
        trunc = dict(block.pop("truncation", None) or {})
        cache = dict(block.pop("cache", None) or {})
        _reject_unknown("rpo", block, {"enable", "seed", "loss_on_prefix", "cold_start"})
        _reject_unknown("rpo.truncation", trunc, {"mode", "max_new_tokens", "min_prefix"})
        _reject_unknown(
            "rpo.cache",
            cache,
            {"key", "update", "store_logprobs", "init_path", "select_metric", "p_best", "correct_only"},
        )
        cold_start = block.get("cold_start", "seed_then_partial")
        if cold_start not in COLD_START_MODES:
            raise ValueError(f"rpo.cold_start must be one of {COLD_START_MODES}, got {cold_start!r}")
        return cls(
            enable=bool(block.get("enable", True)),
            seed=int(block.get("seed", 42)),
            loss_on_prefix=bool(block.get("loss_on_prefix", False)),
            cold_start=cold_start,
            truncation=TruncationConfig(**trunc),
            cache=CacheOptions(
                key=check_key_mode(cache.get("key", "index")),
                update=bool(cache.get("update", True)),
                store_logprobs=bool(cache.get("store_logprobs", False)),
                init_path=cache.get("init_path"),
                replacement=ReplacementConfig(
                    p_best=float(cache.get("p_best", 0.5)),
                    correct_only=bool(cache.get("correct_only", False)),
                    metric=cache.get("select_metric", "score"),
                ),
            ),
        )


def _reject_unknown(where: str, given: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in {where}; expected some of {sorted(known)}")


UNSUPPORTED_ADV_ESTIMATORS = ("remax", "gae")


def check_supported(config: Any, rpo: RPOConfig) -> None:
    """Fail fast on set-ups RPO does not support yet, naming the option to change.

    Multi-turn/tool agents: the cached answer would interleave tool outputs the prefix cannot replay. Colocated
    reward models: the recipe scores inside the rollout (streaming reward). REMAX needs a greedy full-length
    baseline per prompt; GAE's critic would value stale prefix tokens."""
    if not rpo.enable:
        return
    rollout = config.actor_rollout_ref.rollout
    if rollout.multi_turn.get("enable", False):
        raise ValueError("rpo.enable=true does not support actor_rollout_ref.rollout.multi_turn.enable=true yet")
    if config.reward.reward_model.get("enable", False) and not config.reward.reward_model.get(
        "enable_resource_pool", False
    ):
        raise ValueError(
            "rpo.enable=true does not support a colocated reward model (reward.reward_model.enable=true without "
            "enable_resource_pool); use a rule-based reward or give the reward model its own resource pool"
        )
    estimator = str(config.algorithm.adv_estimator)
    if estimator in UNSUPPORTED_ADV_ESTIMATORS:
        raise ValueError(
            f"rpo.enable=true does not support algorithm.adv_estimator={estimator} yet; use a group estimator "
            "such as grpo"
        )
    if rpo.loss_on_prefix and config.algorithm.get("rollout_correction", None) is not None:
        if config.algorithm.rollout_correction.get("bypass_mode", False) and not rpo.cache.store_logprobs:
            raise ValueError(
                "rpo.loss_on_prefix=true with algorithm.rollout_correction.bypass_mode=true uses rollout log-probs "
                "as old log-probs on the prefix: set rpo.cache.store_logprobs=true so they are the cached behaviour "
                "log-probs rather than zeros"
            )
    response_length = int(config.data.max_response_length)
    if rpo.truncation.max_new_tokens > response_length:
        raise ValueError(
            f"rpo.truncation.max_new_tokens={rpo.truncation.max_new_tokens} exceeds "
            f"data.max_response_length={response_length}"
        )
