"""The RPO system prompt asks for exactly the markers the rewards read."""

import pytest

from verl_ext.data_prep.prompts import SYSTEM_PROMPT, build_messages


def test_system_prompt_names_the_markers_the_rewards_read():
    for marker in ("<think>", "</think>", "<answer>", "</answer>", "\\boxed{}", "English"):
        assert marker in SYSTEM_PROMPT


def test_build_messages_puts_the_system_prompt_before_the_problem():
    problem = "What is the remainder when $2^{10}$ is divided by $7$?"
    assert build_messages(problem) == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": problem},
    ]


def test_build_messages_without_system_prompt_has_only_the_user_turn():
    assert build_messages("Compute $1+1$.", system_prompt=None) == [{"role": "user", "content": "Compute $1+1$."}]


@pytest.mark.parametrize("problem", ["", "   \n", None])
def test_build_messages_rejects_an_empty_problem(problem):
    with pytest.raises(ValueError, match="non-empty"):
        build_messages(problem)
