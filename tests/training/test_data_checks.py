"""Start-up data checks: duplicate/missing indices and prompts over the length limit stop the run with examples."""

import pandas as pd
import pytest
from omegaconf import OmegaConf

from verl_ext.cache.keys import DatasetKeyError
from verl_ext.training.data_checks import check_prompt_lengths, check_training_data


class FakeDataset:
    def __init__(self, frame):
        self.dataframe = frame


def frame(indices, contents):
    return pd.DataFrame(
        {
            "data_source": ["src"] * len(indices),
            "prompt": [[{"role": "user", "content": c}] for c in contents],
            "extra_info": [{"index": i} for i in indices],
        }
    )


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from verl_ext.tiny.tokenizer import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def data_config(max_prompt_length=64, filter_overlong=False):
    return OmegaConf.create(
        {"prompt_key": "prompt", "max_prompt_length": max_prompt_length, "filter_overlong_prompts": filter_overlong}
    )


def test_duplicate_index_is_reported(tokenizer):
    with pytest.raises(DatasetKeyError, match="train.parquet"):
        check_training_data(FakeDataset(frame([0, 0], ["a", "b"])), tokenizer, data_config(), files=["train.parquet"],
                            key_mode="index")


def test_overlong_prompt_is_reported_with_its_row(tokenizer):
    rows = frame([0, 1], ["short", "x" * 200])
    with pytest.raises(ValueError, match=r"row 1: \d+ tokens"):
        check_prompt_lengths(rows, tokenizer, source_name="t.parquet", prompt_key="prompt", max_prompt_length=64)
    check_training_data(FakeDataset(rows), tokenizer, data_config(filter_overlong=True), files="t.parquet",
                        key_mode="index")
