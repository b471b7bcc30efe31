"""RPO rewards on real-looking model responses: accuracy (math-verify), format (</think>), cosine length, and
compute_score as verl calls it."""

import math
import operator
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from verl_ext.rewards import (
    RewardConfig,
    accuracy_reward,
    compute_score,
    cosine_length_reward,
    format_reward,
    last_boxed_content,
    unbox,
)
from verl_ext.rewards.accuracy import VERIFY_DEADLINE_S, Verdict, check_answer
from verl_ext.rewards.isolation import DeadlineExceeded, run_bounded

# A response in the shape DeepSeek-R1-Distill models give under the RPO prompt: the template opened <think>.
R1_RESPONSE = (
    "Okay, so I need to add 3/8 and 3/8. Adding the numerators gives 6/8, and dividing the top and bottom by 2 "
    "gives 3/4. Let me double-check: 0.375 + 0.375 = 0.75, which is 3/4.\n</think>\n\n"
    "<answer>\nThe sum is $\\frac{6}{8} = \\boxed{\\frac{3}{4}}$.\n</answer>"
)


def response_with(answer: str) -> str:
    return f"<think>\nLet me work this out step by step.\n</think>\n<answer>The answer is {answer}.</answer>"


# --- last \boxed{} ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("first $\\boxed{3}$, corrected: $\\boxed{4}$", "4"),
        ("$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("$\\boxed{\\{1, 2\\}}$", "\\{1, 2\\}"),
        ("The answer is 42.", None),
        ("earlier $\\boxed{3}$, then cut off: $\\boxed{\\frac{1", None),
    ],
)
def test_last_boxed_content(text, expected):
    assert last_boxed_content(text) == expected


def test_unbox_accepts_bare_and_boxed_ground_truths():
    assert unbox("\\boxed{\\frac{3}{4}}") == "\\frac{3}{4}"
    assert unbox(" 3/4 ") == "3/4"


# --- accuracy -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "ground_truth"),
    [
        ("\\boxed{42}", "42"),
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("\\boxed{0.5}", "\\frac{1}{2}"),
        ("\\boxed{1/2}", "\\frac12"),
        ("\\boxed{\\dfrac{3}{4}}", "3/4"),
        ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}"),
        ("\\boxed{x^2 + 2x + 1}", "(x+1)^2"),
        ("\\boxed{[2, \\infty)}", "[2,\\infty)"),
        ("\\boxed{(3,\\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{25}", "025"),  # AIME answers are sometimes zero-padded
        ("\\boxed{10,000}", "10000"),
        ("\\boxed{36}", "\\boxed{36}"),  # ground truth given boxed
        ("$\\boxed{3}$ at first, but rechecking, $\\boxed{4}$", "4"),  # the last box counts
    ],
)
def test_accuracy_accepts_equivalent_answers(answer, ground_truth):
    assert accuracy_reward(response_with(answer), ground_truth) == 1.0


@pytest.mark.parametrize(
    ("answer", "ground_truth"),
    [
        ("\\boxed{43}", "42"),
        ("\\boxed{\\frac{1}{3}}", "0.5"),
        ("\\boxed{2}", "2, 3"),
        ("42", "42"),  # the right number, but not in \boxed{}
        ("$\\boxed{4}$ at first, but rechecking, $\\boxed{3}$", "4"),  # only the last box counts
        ("$\\boxed{4}$ and then $\\boxed{\\frac{4", "4"),  # cut off inside the final box
        ("\\boxed{}", "4"),
        ("\\boxed{\\frac{}{}}", "4"),  # unparsable: 0, no exception
        ("\\boxed{4}", ""),  # empty ground truth
    ],
)
def test_accuracy_rejects_wrong_or_missing_answers(answer, ground_truth):
    assert accuracy_reward(response_with(answer), ground_truth) == 0.0


def test_math_verify_needs_the_main_thread_for_its_timeouts():
    """Why accuracy.py judges in a worker process: with its timeouts, math-verify refuses to run in a worker thread."""
    from math_verify import parse

    def parse_with_default_timeout():
        return parse("\\boxed{\\frac{3}{4}}")

    with ThreadPoolExecutor(max_workers=1) as pool, pytest.raises(ValueError, match="threaded environment"):
        pool.submit(parse_with_default_timeout).result()


# Answers that keep sympy busy for minutes off the main thread (measured: killed after 25 s in a thread, while
# math-verify's own alarm ends them after its timeout in a main thread).
PATHOLOGICAL = ["9^{9^{9^{9}}}", "2^{2^{2^{2^{2^{2}}}}}", "99999999999!"]


def test_pathological_answers_time_out_from_a_worker_thread_and_score_zero():
    """verl's reward loop scores from a thread pool: a pathological answer must come back, as wrong and timed out,
    while ordinary answers scored at the same time keep their verdicts."""
    responses = [f"</think> \\boxed{{{answer}}}" for answer in PATHOLOGICAL] + [R1_RESPONSE]
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(responses)) as pool:
        results = list(pool.map(lambda response: compute_score("aime2024", response, "3/4"), responses))
    elapsed = time.monotonic() - start
    assert elapsed < 2 * VERIFY_DEADLINE_S, f"scoring took {elapsed:.1f} s"
    assert [r["verify_timeout"] for r in results] == [1.0, 1.0, 1.0, 0.0]
    assert [r["acc"] for r in results] == [False, False, False, True]
    # Scored as wrong: no accuracy term, the wrong branch of the cosine reward (<= 0).
    assert all(r["score"] == pytest.approx(r["format"] + r["cosine"]) and r["cosine"] <= 0 for r in results[:3])


def test_reward_timeout_kills_a_call_that_ignores_signals():
    """The hard bound: C code that never returns to the interpreter (here a plain sleep) is killed at the deadline,
    and the pool serves the next call with a fresh worker."""
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        run_bounded(time.sleep, 60, deadline_s=1.0)
    assert time.monotonic() - start < 10
    assert run_bounded(operator.add, 2, 3, deadline_s=5.0) == 5
    assert check_answer("3/4", "0.75") == Verdict(match=True, timed_out=False)


def test_compute_score_works_in_a_worker_thread_like_verls_reward_loop():
    """verl calls compute_score through loop.run_in_executor, i.e. from a thread pool."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda gt: compute_score("aime2024", R1_RESPONSE, gt), ["3/4", "0.75", "2/3"]))
    assert [result["acc"] for result in results] == [True, True, False]
    assert threading.current_thread() is threading.main_thread()


# --- format -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (R1_RESPONSE, 1.0),
        ("<think>\nreasoning\n</think>\n\n<answer>\\boxed{1}</answer>", 1.0),
        ("short reasoning </think> <answer>\\boxed{1}</answer>", 1.0),  # no newlines around the tag
        ("reasoning that never closes... \\boxed{1}", 0.0),
        ("<think> reasoning \\boxed{1}", 0.0),
        ("first </think> answer, then more </think> text", 0.0),
        ("reasoning </think> answer <think> thinking again", 0.0),
        ("<think> a <think> b </think> answer", 0.0),
        ("", 0.0),
    ],
)
def test_format_reward_requires_exactly_one_closing_think_tag(response, expected):
    assert format_reward(response) == expected


# --- cosine length ------------------------------------------------------------------------------------------------


def test_cosine_reward_endpoints_and_midpoint():
    assert cosine_length_reward(0, True) == pytest.approx(1.0)
    assert cosine_length_reward(500, True) == pytest.approx(0.75)
    assert cosine_length_reward(1000, True) == pytest.approx(0.5)
    assert cosine_length_reward(0, False) == pytest.approx(0.0)
    assert cosine_length_reward(500, False) == pytest.approx(-0.25)
    assert cosine_length_reward(1000, False) == pytest.approx(-0.5)


@pytest.mark.parametrize("length", [1001, 1500, 2000, 50_000])
def test_cosine_reward_is_clamped_past_max_len(length):
    """Unclamped, 2000 characters would be back at the maximum (cos(2*pi) = 1); clamped it stays at the minimum."""
    assert cosine_length_reward(length, True) == pytest.approx(0.5)
    assert cosine_length_reward(length, False) == pytest.approx(-0.5)


@pytest.mark.parametrize("correct", [True, False])
def test_cosine_reward_never_rises_with_length(correct):
    rewards = [cosine_length_reward(n, correct) for n in range(0, 3001, 25)]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(rewards, rewards[1:], strict=False))


def test_cosine_reward_is_configurable():
    kwargs = dict(max_len=10, correct_max=2.0, correct_min=1.0, wrong_max=-1.0, wrong_min=-2.0)
    assert cosine_length_reward(0, True, **kwargs) == pytest.approx(2.0)
    assert cosine_length_reward(10, True, **kwargs) == pytest.approx(1.0)
    assert cosine_length_reward(5, False, **kwargs) == pytest.approx(-1.5)
    assert cosine_length_reward(99, False, **kwargs) == pytest.approx(-2.0)


@pytest.mark.parametrize(("length", "max_len"), [(10, 0), (-1, 1000)])
def test_cosine_reward_rejects_bad_arguments(length, max_len):
    with pytest.raises(ValueError):
        cosine_length_reward(length, True, max_len=max_len)


# --- compute_score ------------------------------------------------------------------------------------------------


def test_compute_score_on_a_correct_r1_response():
    result = compute_score("knoveleng/open-rs", R1_RESPONSE, "\\frac{3}{4}", extra_info={"index": "0"})
    expected_cosine = 0.5 + 0.5 * (1 + math.cos(math.pi * len(R1_RESPONSE) / 1000)) / 2
    assert result["acc"] is True
    assert result["format"] == 1.0
    assert result["cosine"] == pytest.approx(expected_cosine)
    assert result["pred"] == "\\frac{3}{4}"
    assert result["score"] == pytest.approx(1.0 + 1.0 + expected_cosine)


def test_compute_score_on_an_overlong_wrong_response_without_think():
    response = "Let me try. " * 200 + "So the answer is \\boxed{5}."
    result = compute_score("aime2024", response, "204")
    assert result == {"score": pytest.approx(-0.5), "acc": False, "format": 0.0, "cosine": -0.5, "pred": "5",
                      "verify_timeout": 0.0}


def test_compute_score_without_a_box_predicts_nothing():
    result = compute_score("openai/gsm8k", "reasoning </think> The answer is 72.", "72")
    assert (result["acc"], result["pred"], result["format"]) == (False, "", 1.0)


def test_compute_score_takes_weights_and_cosine_shape_from_kwargs():
    result = compute_score(
        "aime2024",
        R1_RESPONSE,
        "3/4",
        accuracy_weight=2.0,
        format_weight=0.0,
        cosine_weight=1.0,
        cosine_max_len=10,
        cosine_correct_min=0.25,
    )
    assert result["cosine"] == pytest.approx(0.25)
    assert result["score"] == pytest.approx(2.0 + 0.25)


def test_compute_score_ignores_verls_own_routing_kwargs():
    result = compute_score("aime2024", R1_RESPONSE, "3/4", reward_router_address=None, reward_model_tokenizer=None)
    assert result["acc"] is True


def test_compute_score_rejects_an_unknown_kwarg():
    with pytest.raises(TypeError, match="cosine_maxlen"):
        compute_score("aime2024", R1_RESPONSE, "3/4", cosine_maxlen=500)


def test_reward_config_defaults_are_the_papers():
    assert RewardConfig() == RewardConfig(
        accuracy_weight=1.0,
        format_weight=1.0,
        cosine_weight=1.0,
        cosine_max_len=1000,
        cosine_correct_max=1.0,
        cosine_correct_min=0.5,
        cosine_wrong_max=0.0,
        cosine_wrong_min=-0.5,
    )


def test_verl_loads_compute_score_as_custom_reward_function_with_reward_kwargs():
    """The recipe's config path: verl imports pkg://verl_ext.rewards and merges reward_kwargs into each call."""
    pytest.importorskip("verl")
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://verl_ext.rewards",
                    "name": "compute_score",
                    "reward_kwargs": {"format_weight": 0.0, "cosine_weight": 0.0},
                }
            }
        }
    )
    reward_fn = get_custom_reward_fn(config)
    result = reward_fn(data_source="aime2024", solution_str=R1_RESPONSE, ground_truth="3/4", extra_info={})
    assert result["score"] == pytest.approx(1.0)
    assert result["acc"] is True
