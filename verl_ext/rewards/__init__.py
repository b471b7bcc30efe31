"""RPO's rewards (accuracy, format, cosine length) and ``compute_score``, verl's custom reward function."""

from verl_ext.rewards.accuracy import accuracy_reward, answers_match, extract_prediction
from verl_ext.rewards.boxed import last_boxed_content, unbox
from verl_ext.rewards.format import format_reward
from verl_ext.rewards.length import cosine_length_reward
from verl_ext.rewards.score import RewardConfig, compute_score

__all__ = [
    "RewardConfig",
    "accuracy_reward",
    "answers_match",
    "compute_score",
    "cosine_length_reward",
    "extract_prediction",
    "format_reward",
    "last_boxed_content",
    "unbox",
]
