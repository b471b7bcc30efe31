"""Tests for verl_ext.cache.keys: prompt keys in both modes and the start-up check of a training set."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.cache.keys import DatasetKeyError, check_dataset_keys, find_key_problems, prompt_key

MESSAGES = [{"role": "system", "content": "Think step by step."}, {"role": "user", "content": "What is 6 × 7?"}]  # noqa: RUF001 (non-ASCII on purpose)


def frame(indices, prompts=None, data_sources=None) -> pd.DataFrame:
    """A training set shaped like verl's: data_source, prompt (list of messages), extra_info (dict or None)."""
    count = len(indices)
    prompts = prompts or [[{"role": "user", "content": f"question {i}"}] for i in range(count)]
    return pd.DataFrame({
        "data_source": data_sources or ["math"] * count,
        "prompt": prompts,
        "extra_info": [None if index == "no extra_info" else ({} if index == "no index" else {"index": index})
                       for index in indices],
    })


# ---------------------------------------------------------------- prompt_key


def test_index_key():
    assert prompt_key("math", {"index": 7, "split": "train"}, MESSAGES, "index") == "math:7"
    assert prompt_key("math", {"index": "q-7"}, None, "index") == "math:q-7"


@pytest.mark.parametrize("index", [np.int64(7), 7.0, np.float32(7.0)])
def test_index_key_normalises_numeric_types(index):
    assert prompt_key("math", {"index": index}, None, "index") == "math:7"


@pytest.mark.parametrize("extra_info", [None, {}, {"index": None}, {"index": float("nan")}, {"index": ""},
                                        {"index": True}])
def test_index_key_without_index(extra_info):
    with pytest.raises(ValueError, match=r"extra_info\.index is missing or null"):
        prompt_key("math", extra_info, MESSAGES, "index")


def test_content_key_is_sha1_of_source_and_canonical_messages():
    expected = hashlib.sha1(json.dumps(["math", MESSAGES], sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=False).encode("utf-8")).hexdigest()
    assert prompt_key("math", None, MESSAGES, "content") == expected


def test_content_key_ignores_dict_order_and_container_types():
    reordered = [{"content": message["content"], "role": message["role"]} for message in MESSAGES]
    as_numpy = np.array([dict(message) for message in MESSAGES], dtype=object)
    key = prompt_key("math", {"index": 1}, MESSAGES, "content")
    assert prompt_key("math", {"index": 2}, reordered, "content") == key  # the index plays no part
    assert prompt_key("math", None, as_numpy, "content") == key
    assert prompt_key("math", None, tuple(MESSAGES), "content") == key


def test_content_key_matches_after_a_parquet_round_trip(tmp_path):
    pq.write_table(pa.Table.from_pandas(frame([0], prompts=[MESSAGES])), tmp_path / "train.parquet")
    loaded = pd.read_parquet(tmp_path / "train.parquet")
    assert isinstance(loaded["prompt"].iloc[0], np.ndarray)
    assert prompt_key("math", None, loaded["prompt"].iloc[0], "content") == prompt_key("math", None, MESSAGES,
                                                                                         "content")


def test_content_key_depends_on_source_and_content():
    key = prompt_key("math", None, MESSAGES, "content")
    assert prompt_key("aime", None, MESSAGES, "content") != key
    assert prompt_key("math", None, MESSAGES[1:], "content") != key


@pytest.mark.parametrize(("data_source", "mode", "message"), [
    ("", "index", "data_source"), (None, "content", "data_source"), ("math", "uid", "key mode")])
def test_prompt_key_rejects_bad_arguments(data_source, mode, message):
    with pytest.raises(ValueError, match=message):
        prompt_key(data_source, {"index": 0}, MESSAGES, mode)


# ---------------------------------------------------------------- dataset checks


def test_clean_dataset_passes_in_both_modes():
    check_dataset_keys(frame([0, 1, 2]), "train.parquet", "index")
    check_dataset_keys(frame([0, 1, 2]), "train.parquet", "content")
    report = find_key_problems(frame([0, 1, 2]), "train.parquet", "index")
    assert report.ok and report.num_rows == 3 and not report.missing_rows and not report.duplicates


def test_same_index_in_two_data_sources_is_not_a_duplicate():
    check_dataset_keys(frame([0, 0], data_sources=["math", "aime"]), "train.parquet", "index")


def test_missing_indices_are_listed():
    data = frame([0, "no index", 2, "no extra_info", None, float("nan"), 6, None, None, None])
    report = find_key_problems(data, "train.parquet", "index")
    assert report.missing_rows == (1, 3, 4, 5, 7, 8, 9) and not report.ok
    with pytest.raises(DatasetKeyError) as error:
        check_dataset_keys(data, "/data/train.parquet", "index")
    message = str(error.value)
    assert "/data/train.parquet" in message and "extra_info.index" in message
    assert "7 rows have no extra_info.index" in message and "rows 1, 3, 4, 5, 7" in message
    assert "rows 1, 3, 4, 5, 7, 8" not in message  # five examples at most


def test_duplicate_indices_are_listed():
    data = frame([0, 1, 0, 2, 1, 0, 0, 0, 0, 0])
    report = find_key_problems(data, "train.parquet", "index")
    assert report.duplicates == {"math:0": (0, 2, 5, 6, 7, 8, 9), "math:1": (1, 4)}
    with pytest.raises(DatasetKeyError) as error:
        check_dataset_keys(data, "train.parquet", "index")
    message = str(error.value)
    assert "2 keys are shared by several rows" in message
    assert "'math:0': rows 0, 2, 5, 6, 7 (+2 more)" in message and "'math:1': rows 1, 4" in message


def test_content_mode_shares_entries_of_identical_prompts():
    data = frame([0, 1, 2], prompts=[MESSAGES, MESSAGES, [{"role": "user", "content": "other"}]])
    report = find_key_problems(data, "train.parquet", "content")
    assert list(report.duplicates.values()) == [(0, 1)] and report.ok
    check_dataset_keys(data, "train.parquet", "content")


def test_content_mode_needs_no_index():
    check_dataset_keys(frame(["no index", None]), "train.parquet", "content")


def test_missing_columns_are_named():
    with pytest.raises(DatasetKeyError, match=r"train.parquet: column\(s\) \['extra_info'\] missing"):
        check_dataset_keys(frame([0]).drop(columns=["extra_info"]), "train.parquet", "index")
    with pytest.raises(DatasetKeyError, match=r"\['question'\] missing"):
        check_dataset_keys(frame([0]), "train.parquet", "content", prompt_column="question")


def test_unkeyable_row_is_named():
    with pytest.raises(DatasetKeyError, match=r"train\.parquet: row 1 cannot be keyed: data_source"):
        check_dataset_keys(frame([0, 1], data_sources=["math", None]), "train.parquet", "content")
