"""Getting the bare problem and the ground truth out of each data set's own fields.

Each helper raises :class:`UnusableRow` with the reason when a row cannot give what is asked for; the pipeline
skips such rows, counts them and reports the first reason, so one malformed row among thousands does not stop a run
but never goes unnoticed either.
"""

from __future__ import annotations

import math
from typing import Any

from verl_ext.rewards.boxed import last_boxed_content

GSM8K_ANSWER_MARKER = "####"
DAPO_INSTRUCTION_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem."
)
DAPO_INSTRUCTION_SUFFIX = 'Remember to put your answer on its own line after "Answer:".'


class UnusableRow(ValueError):
    """A source row that cannot become a training/evaluation example (e.g. a MATH solution without ``\\boxed{}``)."""


def text_field(row: dict[str, Any], column: str) -> str:
    """The stripped, non-empty string in ``row[column]``."""
    value = row[column]
    if not isinstance(value, str) or not value.strip():
        raise UnusableRow(f"column {column!r} is not a non-empty string: {value!r}")
    return value.strip()


def answer_text(value: Any) -> str:
    """An answer as a string: hub sets store some as numbers (AMC's ``142.0``), which must read ``142``."""
    if isinstance(value, bool) or value is None:
        raise UnusableRow(f"answer is not a number or string: {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnusableRow(f"answer is not finite: {value!r}")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise UnusableRow(f"answer is empty or of an unexpected type: {value!r}")


def boxed_answer(solution: str) -> str:
    """The last ``\\boxed{}`` of a worked solution (MATH): the convention verl's MATH preprocessing uses too."""
    boxed = last_boxed_content(solution)
    if boxed is None or not boxed.strip():
        raise UnusableRow("the solution has no closed, non-empty \\boxed{}")
    return boxed.strip()


def gsm8k_final_answer(answer: str) -> str:
    """GSM8K's final answer follows ``####``; thousands separators are dropped (``1,000`` -> ``1000``)."""
    if GSM8K_ANSWER_MARKER not in answer:
        raise UnusableRow(f"the answer has no {GSM8K_ANSWER_MARKER!r} line")
    final = answer.rsplit(GSM8K_ANSWER_MARKER, 1)[1].strip().replace(",", "")
    if not final:
        raise UnusableRow(f"nothing follows {GSM8K_ANSWER_MARKER!r}")
    return final


def dapo_problem(prompt: Any) -> str:
    """The bare problem inside DAPO-Math-17k's user turn, without its Minerva "Answer:" instructions.

    The hub rows are already in verl's format, with the problem wrapped as
    ``<DAPO_INSTRUCTION_PREFIX>\\n\\n<problem>\\n\\n<DAPO_INSTRUCTION_SUFFIX>``. Those instructions contradict our
    system prompt (``\\boxed{}``), so they are removed; a prompt in another shape is unusable rather than guessed at.
    """
    user_turns = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"] if prompt is not None else []
    if len(user_turns) != 1 or not isinstance(user_turns[0].get("content"), str):
        raise UnusableRow(f"expected exactly one user message with text content, got {prompt!r}")
    content = user_turns[0]["content"].strip()
    if not content.startswith(DAPO_INSTRUCTION_PREFIX) or not content.endswith(DAPO_INSTRUCTION_SUFFIX):
        raise UnusableRow(
            "the user message does not have DAPO's shape "
            f"'{DAPO_INSTRUCTION_PREFIX[:40]}...<problem>...{DAPO_INSTRUCTION_SUFFIX}': {content[:120]!r}"
        )
    problem = content[len(DAPO_INSTRUCTION_PREFIX) : -len(DAPO_INSTRUCTION_SUFFIX)].strip()
    if not problem:
        raise UnusableRow("the DAPO prompt holds no problem between its instructions")
    return problem
