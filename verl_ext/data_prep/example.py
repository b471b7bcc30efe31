"""One problem and its ground truth, and the verl row built from it.

verl's ``RLHFDataset`` reads ``prompt`` (chat messages), ``data_source``, ``reward_model.ground_truth`` and
``extra_info``; it copies ``extra_info.index`` into the batch and silently uses 0 when it is missing, and the RPO
experience cache keys its entries by ``data_source:index``. So every row gets an index that is unique within its
file and stable across re-runs and row orders:

* the data set's own row id where it has one (``id``, ``unique_id``), as a string;
* otherwise ``content_index(problem)``: the first 16 hex digits of the SHA-256 of the problem text.

All indices are strings so that the parquet column has one type whatever the source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from verl_ext.data_prep.prompts import SYSTEM_PROMPT, build_messages

CONTENT_INDEX_HEX_DIGITS = 16


@dataclass(frozen=True)
class Example:
    """A problem as the model sees it, its ground truth, and what of the source row is kept for tracing."""

    problem: str
    ground_truth: str
    raw_answer: str
    source_id: str | None = None


def content_index(problem: str) -> str:
    """A stable index from the problem text alone, for data sets without row ids (16 hex digits of SHA-256)."""
    return hashlib.sha256(problem.encode("utf-8")).hexdigest()[:CONTENT_INDEX_HEX_DIGITS]


def to_verl_row(
    example: Example,
    *,
    data_source: str,
    dataset: str,
    split: str,
    index: str,
    system_prompt: str | None = SYSTEM_PROMPT,
) -> dict[str, Any]:
    """verl's RL row for one example; ``dataset`` (the hub id) is kept as ``data_source`` may be a verl alias."""
    return {
        "data_source": data_source,
        "prompt": build_messages(example.problem, system_prompt),
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": example.ground_truth},
        "extra_info": {
            "split": split,
            "index": index,
            "dataset": dataset,
            "problem": example.problem,
            "answer": example.raw_answer,
        },
    }
