"""Accuracy reward: does math-verify find the response's last ``\\boxed{}`` answer equal to the ground truth?

A reward must never hang the run. math-verify guards parsing and comparison with ``signal.alarm`` timeouts, which
only work in a main thread, and verl calls reward functions from a thread pool inside Ray actors; some model answers
(a tower of exponents, a huge factorial) keep sympy busy in C code for minutes. So every comparison runs in a worker
process (:mod:`verl_ext.rewards.isolation`): math-verify's own timeouts work there (:data:`VERIFY_TIMEOUT_S` per
parse and comparison), and past :data:`VERIFY_DEADLINE_S` the worker is killed. Either way the answer scores 0.0 and
the :class:`Verdict` says it timed out, which :func:`verl_ext.rewards.compute_score` reports as ``verify_timeout``.
Only the short boxed expressions are parsed, never the whole response. Any other failure also scores 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException

from verl_ext.rewards.boxed import last_boxed_content, unbox
from verl_ext.rewards.isolation import DeadlineExceeded, run_bounded

VERIFY_TIMEOUT_S = 3
"""math-verify's own budget for each of its three calls (two parses, one comparison), enforced by signals."""
VERIFY_DEADLINE_S = 3 * VERIFY_TIMEOUT_S + 3
"""Hard bound per answer: the worker is killed past it (C code that ignores signals)."""
_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())


@dataclass(frozen=True)
class Verdict:
    """Whether two answers match, and whether math-verify ran out of time deciding (then ``match`` is False)."""

    match: bool
    timed_out: bool = False


def judge(ground_truth: str, predicted: str) -> Verdict:
    """math-verify's verdict in the calling thread, which must be a main thread (signals bound it).

    Both sides are given bare (no ``\\boxed{}``); each is re-wrapped in ``\\boxed{}`` so that math-verify reads it
    as one LaTeX answer. Gold comes first: math-verify's comparison is not symmetric. As math-verify itself does, an
    error parsing a side or comparing one pair of readings counts as no match; a timeout anywhere ends the verdict."""
    try:
        gold = _parse(ground_truth)
        pred = _parse(predicted)
        return Verdict(match=any(_same(g, p) for g in gold for p in pred))
    except TimeoutException:  # derives from BaseException, not Exception
        return Verdict(match=False, timed_out=True)


def _parse(answer: str) -> list:
    try:
        return parse(f"\\boxed{{{answer}}}", _EXTRACTION, parsing_timeout=VERIFY_TIMEOUT_S, raise_on_error=True)
    except Exception:
        return []


def _same(gold: object, pred: object) -> bool:
    try:
        return bool(verify(gold, pred, timeout_seconds=VERIFY_TIMEOUT_S, raise_on_error=True))
    except Exception:
        return False


def check_answer(ground_truth: str, predicted: str) -> Verdict:
    """:func:`judge` in a worker process, bounded by :data:`VERIFY_DEADLINE_S` from any thread."""
    if not ground_truth.strip() or not predicted.strip():
        return Verdict(match=False)
    try:
        return run_bounded(judge, ground_truth, predicted, deadline_s=VERIFY_DEADLINE_S)
    except DeadlineExceeded:
        return Verdict(match=False, timed_out=True)


def answers_match(ground_truth: str, predicted: str) -> bool:
    """True when math-verify judges the two answers equal (``3/4`` = ``\\frac{3}{4}`` = ``0.75``); see
    :func:`check_answer`."""
    return check_answer(ground_truth, predicted).match


def extract_prediction(response: str) -> str:
    """The model's final answer: the content of the last ``\\boxed{}`` of the response, ``""`` when there is none."""
    boxed = last_boxed_content(response)
    return "" if boxed is None else boxed.strip()


def accuracy_reward(response: str, ground_truth: str) -> float:
    """1.0 when the last ``\\boxed{}`` of ``response`` equals ``ground_truth`` (bare or boxed), else 0.0."""
    return 1.0 if answers_match(unbox(ground_truth), extract_prediction(response)) else 0.0
