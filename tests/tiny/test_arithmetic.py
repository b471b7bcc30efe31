"""The synthetic tasks (addition, chain): correct worked solutions, verl's RL/SFT schemas, disjoint splits, short
sequences."""

import random
import re

import pandas as pd
import pytest

from verl_ext.tiny.arithmetic import (
    CHAIN_STEPS,
    DATA_SOURCE,
    Slips,
    chain_problem_for,
    make_problem,
    partition_of,
    problem_for,
    sample_problems,
    write_rl_parquet,
    write_sft_parquet,
)
from verl_ext.tiny.tokenizer import build_tokenizer

ANSWER_FORMAT = re.compile(r"<think>\n(?P<steps>.+)\n</think>\n<answer>\\boxed\{(?P<boxed>\d+)\}</answer>", re.S)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("data")
    write_rl_parquet(out_dir / "train.parquet", 200, seed=0, split="train")
    write_rl_parquet(out_dir / "val.parquet", 100, seed=0, split="val")
    write_sft_parquet(out_dir / "sft.parquet", 500, seed=0)
    return out_dir


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.mark.parametrize("min_digits,max_digits", [(1, 1), (2, 3), (4, 6)])
def test_worked_solution_boxes_the_sum(min_digits, max_digits):
    rng = random.Random(min_digits)
    for _ in range(500):
        problem = make_problem(rng, min_digits=min_digits, max_digits=max_digits)
        match = ANSWER_FORMAT.fullmatch(problem.worked_solution)
        assert match, problem.worked_solution
        assert int(match["boxed"]) == problem.answer
        a, b = map(int, problem.question.removeprefix("Add: ").split("+"))
        assert a + b == problem.answer
        assert a >= 10 ** (min_digits - 1) and b < 10**max_digits


def test_worked_solution_adds_column_by_column():
    assert problem_for(47, 385).worked_solution == (
        "<think>\n7+5+0=12 -> 2\n4+8+1=13 -> 32\n0+3+1=4 -> 432\n</think>\n<answer>\\boxed{432}</answer>"
    )
    assert problem_for(99, 1).worked_solution == (
        "<think>\n9+1+0=10 -> 0\n9+0+1=10 -> 00\ncarry 1 -> 100\n</think>\n<answer>\\boxed{100}</answer>"
    )


def test_chain_writes_each_window_of_four_digits_and_the_next_and_boxes_the_final_four():
    problem = chain_problem_for(38, 17)
    match = ANSWER_FORMAT.fullmatch(problem.worked_solution)
    lines = match["steps"].split("\n")
    assert problem.question == "Chain: 3817" and len(lines) == CHAIN_STEPS
    assert lines[:3] == ["3817=0", "8170=8", "1708=9"]
    sequence = [3, 8, 1, 7] + [int(line[-1]) for line in lines]
    for n, line in enumerate(lines, start=4):
        assert line == "".join(map(str, sequence[n - 4 : n])) + f"={(sequence[n - 4] + sequence[n - 1]) % 10}"
    assert match["boxed"] == "".join(map(str, sequence[-4:])) and problem.answer == int(match["boxed"])
    assert chain_problem_for(0, 0).worked_solution.count("0000=0") == CHAIN_STEPS
    with pytest.raises(ValueError, match="two numbers in 0..99"):
        chain_problem_for(100, 1)


def test_chain_slips_write_the_tens_digit_of_a_carry_step_and_the_chain_goes_on_from_it():
    clean = chain_problem_for(38, 17)
    slipped = chain_problem_for(38, 17, Slips(1.0, random.Random(0)))
    lines = ANSWER_FORMAT.fullmatch(slipped.worked_solution)["steps"].split("\n")
    sequence = [3, 8, 1, 7] + [int(line[-1]) for line in lines]
    for n, line in enumerate(lines, start=4):
        step_sum = sequence[n - 4] + sequence[n - 1]
        assert line == "".join(map(str, sequence[n - 4 : n])) + f"={step_sum // 10 if step_sum >= 10 else step_sum}"
    assert lines[0] == "3817=1"  # 3 + 7 = 10: the slip writes the carry
    assert slipped.answer == int("".join(map(str, sequence[-4:]))) != clean.answer
    assert chain_problem_for(38, 17, Slips(0.0, random.Random(0))) == clean


def test_addition_slips_drop_the_carry():
    slipped = problem_for(58, 67, Slips(1.0, random.Random(0)))
    assert slipped.worked_solution.split("\n")[1:3] == ["8+7+0=15 -> 5", "5+6+0=11 -> 15"]
    assert slipped.answer == 15 and problem_for(58, 67).answer == 125


def test_slip_rate_sets_the_share_of_slipped_carry_steps_and_leaves_the_problems_drawn_unchanged():
    clean = sample_problems(400, 0, "sft", task="chain")
    slipped = sample_problems(400, 0, "sft", task="chain", slip_rate=0.05)
    assert [p.question for p in slipped] == [p.question for p in clean]
    wrong = sum(s.answer != c.answer for s, c in zip(slipped, clean, strict=True)) / len(clean)
    assert 0.25 < wrong < 0.55  # 1 - 0.95 ** ~9.6 visible carry slips per answer = 0.39
    with pytest.raises(ValueError, match="slip_rate must be in"):
        sample_problems(1, 0, "sft", task="chain", slip_rate=1.5)


def test_chain_data_has_disjoint_splits_and_fixed_length_answers(tmp_path, tokenizer):
    write_rl_parquet(tmp_path / "train.parquet", 100, seed=0, split="train", task="chain")
    write_rl_parquet(tmp_path / "val.parquet", 50, seed=0, split="val", task="chain")
    questions = {
        split: set(pd.read_parquet(tmp_path / f"{split}.parquet")["extra_info"].map(lambda e: e["question"]))
        for split in ("train", "val")
    }
    assert len(questions["train"]) == 100 and not questions["train"] & questions["val"]
    lengths = {len(tokenizer(p.worked_solution)["input_ids"]) for p in sample_problems(200, 1, "sft", task="chain")}
    assert lengths == {180}
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        sample_problems(1, 0, "sft", task="nope")


def test_rl_schema(data_dir):
    frame = pd.read_parquet(data_dir / "train.parquet")
    assert list(frame.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    row = frame.iloc[0]
    assert row["data_source"] == DATA_SOURCE
    assert row["ability"] == "math"
    [turn] = list(row["prompt"])
    assert turn["role"] == "user" and turn["content"].startswith("Add: ")
    assert row["reward_model"]["style"] == "rule"
    assert row["reward_model"]["ground_truth"] == row["extra_info"]["answer"]
    assert set(row["extra_info"]) == {"split", "index", "question", "answer"}
    assert row["extra_info"]["question"] == turn["content"]
    assert set(frame["extra_info"].map(lambda info: info["split"])) == {"train"}


@pytest.mark.parametrize("split,n", [("train", 200), ("val", 100)])
def test_rl_indices_unique(data_dir, split, n):
    indices = pd.read_parquet(data_dir / f"{split}.parquet")["extra_info"].map(lambda info: info["index"])
    assert sorted(indices) == list(range(n))


def _unordered_pairs(questions):
    return {tuple(sorted(map(int, question.removeprefix("Add: ").split("+")))) for question in questions}


def _rl_questions(path):
    return pd.read_parquet(path)["extra_info"].map(lambda info: info["question"])


def test_splits_are_disjoint(data_dir):
    train = _unordered_pairs(_rl_questions(data_dir / "train.parquet"))
    val = _unordered_pairs(_rl_questions(data_dir / "val.parquet"))
    sft = _unordered_pairs(messages[0]["content"] for messages in pd.read_parquet(data_dir / "sft.parquet")["messages"])
    assert (len(train), len(val), len(sft)) == (200, 100, 500)
    assert not train & val and not train & sft and not val & sft


def test_partition_ignores_operand_order():
    rng = random.Random(0)
    for _ in range(1000):
        a, b = rng.randint(1, 10**6), rng.randint(1, 10**6)
        assert partition_of(a, b) == partition_of(b, a)


def test_sampling_is_deterministic_and_fails_clearly_when_exhausted():
    assert sample_problems(20, 3, "train") == sample_problems(20, 3, "train")
    with pytest.raises(ValueError, match="distinct addition val problems"):
        sample_problems(100, 0, "val", min_digits=1, max_digits=1)


def test_sft_schema(data_dir):
    frame = pd.read_parquet(data_dir / "sft.parquet")
    assert list(frame.columns) == ["messages"]
    user, assistant = list(frame.iloc[0]["messages"])
    assert user["role"] == "user" and assistant["role"] == "assistant"
    assert ANSWER_FORMAT.fullmatch(assistant["content"])


def test_prompt_plus_answer_stays_short(tokenizer):
    longest = problem_for(999, 999)
    messages = [
        {"role": "user", "content": longest.question},
        {"role": "assistant", "content": longest.worked_solution},
    ]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    assert len(ids) < 120


def test_verl_sft_dataset_reads_it_and_trains_on_the_answer_only(data_dir, tokenizer):
    """verl's SFT trainer (verl/trainer/sft_trainer.py) builds MultiTurnSFTDataset from data.messages_key;
    it also asserts that per-turn rendering concatenates to the whole conversation's rendering."""
    multiturn = pytest.importorskip("verl.utils.dataset.multiturn_sft_dataset")
    dataset = multiturn.MultiTurnSFTDataset(
        str(data_dir / "sft.parquet"),
        tokenizer,
        {"messages_key": "messages", "pad_mode": "no_padding", "max_length": 128, "truncation": "error"},
    )
    assert len(dataset) == 500
    item = dataset[0]
    answer = pd.read_parquet(data_dir / "sft.parquet")["messages"][0][1]["content"]
    trained_ids = item["input_ids"][item["loss_mask"].bool()].tolist()
    assert tokenizer.decode(trained_ids) == answer + "<|im_end|>\n"


def test_verl_rl_dataset_reads_it(data_dir, tokenizer):
    rl_dataset = pytest.importorskip("verl.utils.dataset.rl_dataset")
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        {"max_prompt_length": 32, "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1}
    )
    dataset = rl_dataset.RLHFDataset(str(data_dir / "val.parquet"), tokenizer, config)
    assert len(dataset) == 100
    item = dataset[3]
    assert item["index"] == 3 and item["raw_prompt"][0]["content"].startswith("Add: ")
    assert item["reward_model"]["ground_truth"] == item["extra_info"]["answer"]
