"""The RPO system prompt and the chat messages built from it.

The paper trains and evaluates with one system prompt that asks for the reasoning inside ``<think> </think>``, the
answer inside ``<answer> </answer>`` and the final answer inside ``\\boxed{}``. The rewards in
:mod:`verl_ext.rewards` read exactly those markers (``</think>`` for the format reward, the last ``\\boxed{}`` for
accuracy), so every data set the recipe uses is wrapped with this prompt by ``data_prep/prepare.py``.
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "A conversation between a User and an Assistant. The User gives a math problem and the Assistant solves it. "
    "The Assistant first thinks through the reasoning process and then gives the User the answer. "
    "The reasoning is enclosed in <think> </think> tags and the answer in <answer> </answer> tags, i.e. "
    "<think> reasoning process here </think> <answer> answer here </answer>. "
    "The final answer must be written within \\boxed{}. Respond in English."
)


def build_messages(problem: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """Return the chat messages for one problem: the system prompt (unless ``None``), then the problem as the user turn.

    The list is what verl's ``RLHFDataset`` reads from the ``prompt`` column and renders with the model's chat template.
    ``system_prompt=None`` exists for models whose template discourages a system turn.
    """
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError(f"build_messages: the problem must be a non-empty string, got {problem!r}")
    messages = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    messages.append({"role": "user", "content": problem})
    return messages
