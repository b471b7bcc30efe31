"""The RPO reward as verl's ``reward.custom_reward_function``: accuracy + format + cosine length, weighted 1:1:1.

verl (``verl.trainer.ppo.reward.get_custom_reward_fn``) calls
``compute_score(data_source=, solution_str=, ground_truth=, extra_info=, **reward_kwargs)``, where ``reward_kwargs``
is ``reward.custom_reward_function.reward_kwargs`` from the config and takes precedence over call-time kwargs. The
reward managers (``naive``, ``dapo``) take ``score`` as the reward and log every other key as ``reward_extra_info``;
``acc`` is what DAPO's ``filter_groups.metric=acc`` and validation accuracy read, ``pred`` feeds majority voting.

Use it with ``reward.custom_reward_function.path=pkg://verl_ext.rewards`` and ``...name=compute_score``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from verl_ext.rewards.accuracy import check_answer, extract_prediction
from verl_ext.rewards.boxed import unbox
from verl_ext.rewards.format import format_reward
from verl_ext.rewards.length import cosine_length_reward

VERIFY_TIMEOUT_FIELD = "verify_timeout"
"""The reward extra field that marks an answer math-verify could not judge in time."""

# Keyword arguments verl's reward managers may add on their own (reward-model routing); they do not concern us.
VERL_PASSTHROUGH_KWARGS = frozenset({"reward_router_address", "reward_model_tokenizer"})


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the three terms and the cosine reward's shape; every field can be set from ``reward_kwargs``."""

    accuracy_weight: float = 1.0
    format_weight: float = 1.0
    cosine_weight: float = 1.0
    cosine_max_len: int = 1000
    cosine_correct_max: float = 1.0
    cosine_correct_min: float = 0.5
    cosine_wrong_max: float = 0.0
    cosine_wrong_min: float = -0.5

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> RewardConfig:
        """Build from ``reward_kwargs``; an unknown key is a config typo and raises rather than being ignored."""
        known = {field.name for field in fields(cls)}
        unknown = set(kwargs) - known - VERL_PASSTHROUGH_KWARGS
        if unknown:
            raise TypeError(f"compute_score: unknown reward_kwargs {sorted(unknown)}; accepted: {sorted(known)}")
        return cls(**{name: value for name, value in kwargs.items() if name in known})


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Score one response (the decoded prefix+suffix in RPO) against its ground truth.

    Returns ``{"score": weighted sum, "acc": bool, "format": float, "cosine": float, "pred": str,
    "verify_timeout": float}``; ``verify_timeout`` is 1.0 when math-verify ran out of time (the answer then scores as
    wrong), so the trainer can count such answers (``reward/verify_timeouts``).
    ``data_source`` and ``extra_info`` are not needed: every data set is scored the same way.
    """
    config = RewardConfig.from_kwargs(kwargs)
    pred = extract_prediction(solution_str)
    verdict = check_answer(unbox(ground_truth), pred)
    correct = verdict.match
    accuracy = 1.0 if correct else 0.0
    formatted = format_reward(solution_str)
    cosine = cosine_length_reward(
        len(solution_str),
        correct,
        max_len=config.cosine_max_len,
        correct_max=config.cosine_correct_max,
        correct_min=config.cosine_correct_min,
        wrong_max=config.cosine_wrong_max,
        wrong_min=config.cosine_wrong_min,
    )
    score = config.accuracy_weight * accuracy + config.format_weight * formatted + config.cosine_weight * cosine
    return {"score": score, "acc": correct, "format": formatted, "cosine": cosine, "pred": pred,
            VERIFY_TIMEOUT_FIELD: float(verdict.timed_out)}
