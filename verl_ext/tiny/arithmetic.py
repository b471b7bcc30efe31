"""Synthetic arithmetic tasks whose answers reason step by step, so a 0.33M-parameter model learns them on CPU.

``addition`` (the default): the worked solution adds column by column from the right and carries the partial result
forward on every line ("4+8+1=13 -> 32"); the boxed answer is then a copy of the last partial result. This gives
RPO a real multi-step reasoning trace whose prefixes are meaningful to reuse, while staying under ~110 tokens with
the character-level tokenizer for 2-3 digit operands. Longer operands make longer answers, but the tiny model cannot
find the digits of a column at that distance (7-9 digits: no correct answer after a 500-step warm-up).

``chain``: from four digits, a lagged Fibonacci sequence modulo 10 (s_n = s_{n-4} + s_{n-1} mod 10), one line
per new digit that writes the last four digits and the new one ("3817=0"), 24 lines, and the last four digits
boxed. Every token reads at most two others, all within the line before it: the tiny model learns that in a few
hundred steps, while it stayed at chance with "x+y=z" lines whose x is four lines back or with a chain modulo 100
(whose result digits need four digits and a carry). An answer is 181 tokens, and a slip anywhere carries into the
answer: a long trace in which early steps decide the result.

Demonstrations can carry **carry slips** (``slip_rate``, SFT data only; RL prompts and their ground truths are always
right): in a step whose sum reaches 10, a demonstration drops the carry with that probability (``addition``: the
next column adds a carry of 0; ``chain``: the line writes the tens digit, 1, instead of the units). The writer
then continues correctly from what it wrote, so the slip carries into a wrong boxed answer. A model warmed up on
such data makes the same slip at about the same rate: a systematic, position-independent error of the kind that
RL on the final answer can find and remove, unlike the rare random slips of a model trained on clean data.

Train, val and SFT problems are disjoint by construction: every problem belongs to exactly one partition,
chosen by a stable hash of its (unordered) operands, so no seed or size can make the sets overlap and a+b
never leaks into another set as b+a.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import pandas as pd

DATA_SOURCE = "tiny_arith"
QUESTION_TEMPLATE = "Add: {a}+{b}"
CHAIN_QUESTION_TEMPLATE = "Chain: {start}"
CHAIN_LAG = 4
CHAIN_STEPS = 24

Partition = Literal["train", "val", "sft"]
# Share of all problems (out of 10 hash buckets) that each partition owns.
_PARTITION_BUCKETS: dict[Partition, range] = {"val": range(0, 1), "train": range(1, 3), "sft": range(3, 10)}
_MAX_DRAWS_PER_PROBLEM = 1000


@dataclass
class Slips:
    """Carry slips in demonstrations: each step whose sum reaches 10 slips with probability ``rate``, drawn from
    ``rng``. At rate 0 the RNG is never drawn, so clean demonstrations are exactly the slip-free ones."""

    rate: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"slip_rate must be in [0, 1], got {self.rate}")

    def slip(self, step_sum: int) -> bool:
        """Whether a step that sums to ``step_sum`` slips (only steps with a carry can)."""
        return step_sum >= 10 and self.rate > 0.0 and self.rng.random() < self.rate


NO_SLIPS = Slips()


@dataclass(frozen=True)
class Problem:
    question: str
    answer: int
    worked_solution: str


def _column_addition(a: int, b: int, slips: Slips) -> tuple[str, int]:
    """The worked column addition of a+b and the sum it boxes (a+b unless a slip dropped a carry)."""
    digits_a, digits_b = str(a)[::-1], str(b)[::-1]
    carry, partial, lines = 0, "", []
    for column in range(max(len(digits_a), len(digits_b))):
        x = int(digits_a[column]) if column < len(digits_a) else 0
        y = int(digits_b[column]) if column < len(digits_b) else 0
        column_sum = x + y + carry
        partial = str(column_sum % 10) + partial
        lines.append(f"{x}+{y}+{carry}={column_sum} -> {partial}")
        carry = 0 if slips.slip(column_sum) else column_sum // 10
    if carry:
        partial = str(carry) + partial
        lines.append(f"carry {carry} -> {partial}")
    steps = "\n".join(lines)
    return f"<think>\n{steps}\n</think>\n<answer>\\boxed{{{int(partial)}}}</answer>", int(partial)


def worked_solution(a: int, b: int, slips: Slips = NO_SLIPS) -> str:
    """Column addition of a+b in the project's answer format:
    "<think>\\n...one line per column...\\n</think>\\n<answer>\\boxed{N}</answer>"; a slip drops a column's carry."""
    return _column_addition(a, b, slips)[0]


def problem_for(a: int, b: int, slips: Slips = NO_SLIPS) -> Problem:
    """The addition a+b; with slips, ``answer`` is the (wrong) sum the slipped demonstration boxes."""
    solution, boxed = _column_addition(a, b, slips)
    return Problem(question=QUESTION_TEMPLATE.format(a=a, b=b), answer=boxed, worked_solution=solution)


def chain_problem_for(a: int, b: int, slips: Slips = NO_SLIPS) -> Problem:
    """The ``chain`` problem from a, b in 0..99: the digits of a and b (two each, zero-padded) start a lagged
    Fibonacci sequence modulo 10, s_n = (s_{n-4} + s_{n-1}) mod 10. The worked answer writes one line per new digit,
    the last four digits then "=" and the new one ("3817=0"), CHAIN_STEPS lines, and boxes the final four digits.
    A slip writes the tens digit of a sum of 10 or more (1) as the new digit, and the sequence goes on from it."""
    if not (0 <= a <= 99 and 0 <= b <= 99):
        raise ValueError(f"a chain starts from two numbers in 0..99, got {a} and {b}")
    start = f"{a:02d}{b:02d}"
    digits = [int(d) for d in start]
    lines = []
    for _ in range(CHAIN_STEPS):
        window = digits[-CHAIN_LAG:]
        step_sum = window[0] + window[-1]
        digits.append(step_sum // 10 if slips.slip(step_sum) else step_sum % 10)
        lines.append(f"{''.join(map(str, window))}={digits[-1]}")
    steps = "\n".join(lines)
    final = "".join(map(str, digits[-CHAIN_LAG:]))
    solution = f"<think>\n{steps}\n</think>\n<answer>\\boxed{{{final}}}</answer>"
    return Problem(question=CHAIN_QUESTION_TEMPLATE.format(start=start), answer=int(final), worked_solution=solution)


def _draw_operand(rng: random.Random, min_digits: int, max_digits: int) -> int:
    digits = rng.randint(min_digits, max_digits)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


def make_problem(rng: random.Random, *, min_digits: int = 2, max_digits: int = 3) -> Problem:
    """A random a+b, each operand's digit count drawn uniformly from [min_digits, max_digits]."""
    return problem_for(_draw_operand(rng, min_digits, max_digits), _draw_operand(rng, min_digits, max_digits))


def _addition_operands(rng: random.Random, min_digits: int, max_digits: int) -> tuple[int, int]:
    return _draw_operand(rng, min_digits, max_digits), _draw_operand(rng, min_digits, max_digits)


def _chain_start(rng: random.Random, min_digits: int, max_digits: int) -> tuple[int, int]:
    """The chain's state is always two 2-digit numbers; the digit range is the addition task's."""
    return rng.randint(0, 99), rng.randint(0, 99)


@dataclass(frozen=True)
class Task:
    """How a task draws the two numbers of a problem (from an RNG and the digit range) and builds the problem."""

    draw: Callable[[random.Random, int, int], tuple[int, int]]
    problem: Callable[[int, int, Slips], Problem]


TASKS: dict[str, Task] = {
    "addition": Task(_addition_operands, problem_for),
    "chain": Task(_chain_start, chain_problem_for),
}


def partition_of(a: int, b: int) -> Partition:
    """The one partition that owns a+b (and b+a); crc32 rather than hash() so it is stable across processes."""
    bucket = zlib.crc32(f"{min(a, b)}+{max(a, b)}".encode()) % 10
    return next(name for name, buckets in _PARTITION_BUCKETS.items() if bucket in buckets)


def sample_problems(
    n: int, seed: int, partition: Partition, *, min_digits: int = 2, max_digits: int = 3, task: str = "addition",
    slip_rate: float = 0.0,
) -> list[Problem]:
    """``n`` distinct problems of ``task`` from ``partition``, deterministic in ``seed``; ``slip_rate`` puts carry
    slips into the worked solutions (for demonstrations; the problems drawn do not depend on it).

    Raises ValueError for an unknown task, or when the partition has too few problems to supply ``n``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; the tasks are {', '.join(TASKS)}")
    draw, build = TASKS[task].draw, TASKS[task].problem
    rng = random.Random(seed)
    slips = Slips(slip_rate, random.Random(f"slips:{seed}"))
    seen: set[tuple[int, int]] = set()
    problems: list[Problem] = []
    for _ in range(_MAX_DRAWS_PER_PROBLEM * n):
        if len(problems) == n:
            break
        a, b = draw(rng, min_digits, max_digits)
        key = (min(a, b), max(a, b))
        if key in seen or partition_of(a, b) != partition:
            continue
        seen.add(key)
        problems.append(build(a, b, slips))
    if len(problems) < n:
        raise ValueError(
            f"found only {len(problems)} of {n} distinct {task} {partition} problems with {min_digits}-{max_digits} "
            "digits; widen the digit range or ask for fewer"
        )
    return problems


def write_rl_parquet(
    path: str | Path, n: int, seed: int, split: Literal["train", "val"], *, min_digits: int = 2, max_digits: int = 3,
    task: str = "addition",
) -> None:
    """Writes ``n`` prompts in verl's RL schema (RLHFDataset): the prompt is a single short user turn and the
    reward's ground truth is the sum as a string. extra_info.index runs 0..n-1 within the file."""
    problems = sample_problems(n, seed, split, min_digits=min_digits, max_digits=max_digits, task=task)
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


def write_sft_parquet(
    path: str | Path, n: int, seed: int, *, min_digits: int = 2, max_digits: int = 3, task: str = "addition",
    slip_rate: float = 0.0,
) -> None:
    """Writes ``n`` worked examples for verl's SFT trainer (``verl.trainer.sft_trainer``), whose default dataset,
    verl.utils.dataset.multiturn_sft_dataset.MultiTurnSFTDataset, reads a list of {"role", "content"} messages
    from the column named by ``data.messages_key`` (default "messages") and trains on the assistant turns.
    ``slip_rate``: carry slips
    in the demonstrations (module docstring)."""
    problems = sample_problems(
        n, seed, "sft", min_digits=min_digits, max_digits=max_digits, task=task, slip_rate=slip_rate
    )
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
