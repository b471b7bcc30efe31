"""A synthetic addition task whose answers reason step by step, so a 0.33M-parameter model learns it on CPU.

The worked solution adds column by column from the right and carries the partial result forward on every line
("4+8+1=13 -> 32"), so each step only needs local information; the boxed answer is then a copy of the last
partial result. This gives RPO a real multi-step reasoning trace whose prefixes are meaningful to reuse, while
staying under ~110 tokens with the character-level tokenizer.

Train, val and SFT problems are disjoint by construction: every problem belongs to exactly one partition,
chosen by a stable hash of its (unordered) operands, so no seed or size can make the sets overlap and a+b
never leaks into another set as b+a.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

DATA_SOURCE = "tiny_arith"
QUESTION_TEMPLATE = "Add: {a}+{b}"

Partition = Literal["train", "val", "sft"]
# Share of all problems (out of 10 hash buckets) that each partition owns.
_PARTITION_BUCKETS: dict[Partition, range] = {"val": range(0, 1), "train": range(1, 3), "sft": range(3, 10)}
_MAX_DRAWS_PER_PROBLEM = 1000


@dataclass(frozen=True)
class Problem:
    question: str
    answer: int
    worked_solution: str


def worked_solution(a: int, b: int) -> str:
    """Column addition of a+b in the project's answer format:
    "<think>\\n...one line per column...\\n</think>\\n<answer>\\boxed{N}</answer>"."""
    digits_a, digits_b = str(a)[::-1], str(b)[::-1]
    carry, partial, lines = 0, "", []
    for column in range(max(len(digits_a), len(digits_b))):
        x = int(digits_a[column]) if column < len(digits_a) else 0
        y = int(digits_b[column]) if column < len(digits_b) else 0
        column_sum = x + y + carry
        partial = str(column_sum % 10) + partial
        lines.append(f"{x}+{y}+{carry}={column_sum} -> {partial}")
        carry = column_sum // 10
    if carry:
        partial = str(carry) + partial
        lines.append(f"carry {carry} -> {partial}")
    steps = "\n".join(lines)
    return f"<think>\n{steps}\n</think>\n<answer>\\boxed{{{int(partial)}}}</answer>"


def problem_for(a: int, b: int) -> Problem:
    return Problem(question=QUESTION_TEMPLATE.format(a=a, b=b), answer=a + b, worked_solution=worked_solution(a, b))


def _draw_operand(rng: random.Random, min_digits: int, max_digits: int) -> int:
    digits = rng.randint(min_digits, max_digits)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def make_problem(rng: random.Random, *, min_digits: int = 2, max_digits: int = 3) -> Problem:
    """A random a+b, each operand's digit count drawn uniformly from [min_digits, max_digits]."""
    return problem_for(_draw_operand(rng, min_digits, max_digits), _draw_operand(rng, min_digits, max_digits))


def partition_of(a: int, b: int) -> Partition:
    """The one partition that owns a+b (and b+a); crc32 rather than hash() so it is stable across processes."""
    bucket = zlib.crc32(f"{min(a, b)}+{max(a, b)}".encode()) % 10
    return next(name for name, buckets in _PARTITION_BUCKETS.items() if bucket in buckets)


def sample_problems(
    n: int, seed: int, partition: Partition, *, min_digits: int = 2, max_digits: int = 3
) -> list[Problem]:
    """``n`` distinct problems from ``partition``, deterministic in ``seed``.

    Raises ValueError when the digit range has too few problems in the partition to supply ``n``."""
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    problems: list[Problem] = []
    for _ in range(_MAX_DRAWS_PER_PROBLEM * n):
        if len(problems) == n:
            break
        a, b = _draw_operand(rng, min_digits, max_digits), _draw_operand(rng, min_digits, max_digits)
        key = (min(a, b), max(a, b))
        if key in seen or partition_of(a, b) != partition:
            continue
        seen.add(key)
        problems.append(problem_for(a, b))
    if len(problems) < n:
        raise ValueError(
            f"found only {len(problems)} of {n} distinct {partition} problems with {min_digits}-{max_digits} digits; "
            "widen the digit range or ask for fewer"
        )
    return problems


def write_rl_parquet(
    path: str | Path, n: int, seed: int, split: Literal["train", "val"], *, min_digits: int = 2, max_digits: int = 3
) -> None:
    """Writes ``n`` prompts in verl's RL schema (RLHFDataset): the prompt is a single short user turn and the
    reward's ground truth is the sum as a string. extra_info.index runs 0..n-1 within the file."""
    problems = sample_problems(n, seed, split, min_digits=min_digits, max_digits=max_digits)
    rows = [
        {
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "user", "content": problem.question}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(problem.answer)},
            "extra_info": {
                "split": split,
                "index": index,
                "question": problem.question,
                "answer": str(problem.answer),
            },
        }
        for index, problem in enumerate(problems)
    ]
    pd.DataFrame(rows).to_parquet(path, index=False)


def write_sft_parquet(path: str | Path, n: int, seed: int, *, min_digits: int = 2, max_digits: int = 3) -> None:
    """Writes ``n`` worked examples for verl's SFT trainer (verl/trainer/sft_trainer.py), whose default dataset,
    verl.utils.dataset.multiturn_sft_dataset.MultiTurnSFTDataset, reads a list of {"role", "content"} messages
    from the column named by ``data.messages_key`` (default "messages") and trains on the assistant turns."""
    problems = sample_problems(n, seed, "sft", min_digits=min_digits, max_digits=max_digits)
    rows = [
        {
            "messages": [
                {"role": "user", "content": problem.question},
                {"role": "assistant", "content": problem.worked_solution},
            ]
        }
        for problem in problems
    ]
    pd.DataFrame(rows).to_parquet(path, index=False)
