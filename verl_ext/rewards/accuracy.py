"""Accuracy reward: does math-verify find the response's last ``\\boxed{}`` answer equal to the ground truth?

math-verify guards parsing and comparison with ``signal.alarm`` timeouts, which only work in the main thread; in any
other thread it raises ``ValueError`` instead of scoring. verl calls reward functions through
``loop.run_in_executor`` (a thread pool) inside Ray actors, so the timeouts are switched off (``None``) off the
main thread. Only the short boxed expressions are parsed, never the whole response, which keeps an unguarded parse
cheap. Any failure, a timeout included, scores 0.0: a reward must never raise into the training loop.
"""

from __future__ import annotations

import threading

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException

from verl_ext.rewards.boxed import last_boxed_content, unbox

MAIN_THREAD_TIMEOUT_S = 5
_EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())


def _timeout_s() -> int | None:
    """Seconds math-verify may spend per parse/comparison here; ``None`` (no timeout) where signals cannot work."""
    return MAIN_THREAD_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def answers_match(ground_truth: str, predicted: str) -> bool:
    """True when math-verify judges the two answers equal (``3/4`` = ``\\frac{3}{4}`` = ``0.75``).

    Both sides are given bare (no ``\\boxed{}``); each is re-wrapped in ``\\boxed{}`` so that math-verify reads it
    as one LaTeX answer. Gold comes first: math-verify's comparison is not symmetric.
    """
    if not ground_truth.strip() or not predicted.strip():
        return False
    timeout = _timeout_s()
    try:
        gold = parse(f"\\boxed{{{ground_truth}}}", _EXTRACTION, parsing_timeout=timeout)
        pred = parse(f"\\boxed{{{predicted}}}", _EXTRACTION, parsing_timeout=timeout)
        return bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=timeout))
    except (Exception, TimeoutException):  # math-verify's TimeoutException derives from BaseException
        return False


def extract_prediction(response: str) -> str:
    """The model's final answer: the content of the last ``\\boxed{}`` of the response, ``""`` when there is none."""
    boxed = last_boxed_content(response)
    return "" if boxed is None else boxed.strip()


def accuracy_reward(response: str, ground_truth: str) -> float:
    """1.0 when the last ``\\boxed{}`` of ``response`` equals ``ground_truth`` (bare or boxed), else 0.0."""
    return 1.0 if answers_match(unbox(ground_truth), extract_prediction(response)) else 0.0
