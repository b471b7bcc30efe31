"""DAPO's group filter keeps exactly the groups whose answers disagree on the filter metric."""

import numpy as np
import pytest

from verl_ext.training.group_filter import group_count, informative_rows, no_signal_group_count


def test_keeps_groups_with_spread_and_singletons():
    uids = ["a", "a", "b", "b", "c", "d", "d"]
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert informative_rows(uids, values).tolist() == [0, 1, 4]


def test_interleaved_rows_keep_their_positions():
    uids = np.array(["x", "y", "x", "y"], dtype=object)
    assert informative_rows(uids, [0.0, 1.0, 1.0, 1.0]).tolist() == [0, 2]


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="3 uids but 2"):
        informative_rows(["a", "a", "b"], [1.0, 0.0])


def test_group_count():
    assert group_count(["a", "b", "a"]) == 2


def test_no_signal_groups_are_those_whose_answers_all_scored_the_same():
    uids = ["a", "a", "b", "b", "c", "c", "d"]
    values = [1.0, 1.0, 0.0, 1.0, -0.5, -0.5, 3.0]
    assert no_signal_group_count(uids, values) == 2  # a and c; d has one row
