"""Format reward: did the response close its reasoning exactly once?

The reference code rewards a completion containing ``"\\n</think>\\n"``. Chat templates of reasoning models (e.g.
DeepSeek-R1-Distill) put the opening ``<think>`` into the prompt, so the response usually starts inside the reasoning
and only the closing tag is reliably the model's own. The rule, whitespace-insensitive:

* ``</think>`` occurs exactly once, and
* ``<think>`` occurs at most once, and if it does, before ``</think>`` (no second reasoning block opened).

Nothing is required after ``</think>``: whether an answer follows is what the accuracy reward measures.
"""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


def format_reward(response: str) -> float:
    """1.0 when ``response`` closes its reasoning exactly once (rule in the module docstring), else 0.0."""
    if response.count(CLOSE_TAG) != 1:
        return 0.0
    opens = response.count(OPEN_TAG)
    if opens > 1 or (opens == 1 and response.index(OPEN_TAG) > response.index(CLOSE_TAG)):
        return 0.0
    return 1.0
