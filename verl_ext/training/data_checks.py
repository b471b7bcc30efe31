"""Start-up checks of the training data that RPO depends on, failing fast with the file, row and field.

RPO keys its experience cache by prompt: a missing or duplicated ``extra_info.index`` silently makes prompts share
(or never find) their entry, since verl's dataset turns a missing index into 0. A prompt longer than
``data.max_prompt_length`` is left-truncated by verl's agent loop without notice, so the model would be trained on
a question it never saw whole.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from verl_ext.cache.keys import KeyMode, check_dataset_keys

MAX_EXAMPLES = 5


def dataset_frame(dataset: Any) -> pd.DataFrame:
    """The rows of verl's RLHFDataset (a datasets.Dataset in verl 0.9.1) as pandas."""
    frame = dataset.dataframe
    return frame.to_pandas() if hasattr(frame, "to_pandas") else pd.DataFrame(frame)


def check_prompt_lengths(
    frame: pd.DataFrame, tokenizer: Any, *, source_name: str, prompt_key: str, max_prompt_length: int,
    chat_template_kwargs: dict | None = None,
) -> None:
    """Raise ValueError listing rows whose chat-templated prompt exceeds ``max_prompt_length`` tokens."""
    too_long: list[tuple[int, int]] = []
    for row, messages in enumerate(frame[prompt_key]):
        ids = tokenizer.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=True, tokenize=True, return_dict=False,
            **(chat_template_kwargs or {}),
        )
        if len(ids) > max_prompt_length:
            too_long.append((row, len(ids)))
    if too_long:
        examples = ", ".join(f"row {row}: {n} tokens" for row, n in too_long[:MAX_EXAMPLES])
        raise ValueError(
            f"{source_name}: {len(too_long)} prompt(s) in column '{prompt_key}' exceed data.max_prompt_length="
            f"{max_prompt_length} ({examples}); raise data.max_prompt_length or set data.filter_overlong_prompts=true"
        )


def check_training_data(
    dataset: Any, tokenizer: Any, data_config: Any, *, files: Sequence[str] | str, key_mode: KeyMode
) -> None:
    source_name = files if isinstance(files, str) else ", ".join(str(f) for f in files)
    frame = dataset_frame(dataset)
    check_dataset_keys(frame, source_name, key_mode, prompt_column=data_config.prompt_key)
    if not data_config.get("filter_overlong_prompts", False):
        check_prompt_lengths(
            frame, tokenizer, source_name=source_name, prompt_key=data_config.prompt_key,
            max_prompt_length=int(data_config.max_prompt_length),
            chat_template_kwargs=dict(data_config.get("apply_chat_template_kwargs", {}) or {}),
        )
