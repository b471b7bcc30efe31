"""The data sets RPO trains and evaluates on: where each lives and how one of its rows becomes an :class:`Example`.

Each ``DatasetSpec`` names the hub repository, the columns its mapping reads, its splits (ours -> the hub's) and, per
split, the files of the hub repository to read when a local copy is given. Hub layouts were checked against the
dataset cards where available; see ``data_prep/README.md``.

``data_source`` is a value verl's ``default_compute_score`` knows where one fits the data set, otherwise the hub id;
the recipe scores everything with :func:`verl_ext.rewards.compute_score`, so ``data_source`` only names the set in
metrics and cache keys. The hub id is always kept in ``extra_info.dataset``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from verl_ext.data_prep.answers import (
    answer_text,
    boxed_answer,
    dapo_problem,
    gsm8k_final_answer,
    text_field,
)
from verl_ext.data_prep.example import Example

Row = dict[str, Any]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set lives and how to map its rows; ``splits`` maps our split name to the hub's."""

    name: str
    hub_id: str
    data_source: str
    columns: tuple[str, ...]
    to_example: Callable[[Row], Example]
    splits: Mapping[str, str]
    local_files: Mapping[str, tuple[str, ...]]
    hub_configs: tuple[str | None, ...] = (None,)
    keep: Callable[[Row], bool] | None = None
    description: str = ""

    @property
    def default_split(self) -> str:
        """The first split listed: ``train`` for training sets, ``test`` for evaluation sets."""
        return next(iter(self.splits))


def problem_answer_row(row: Row) -> Example:
    """Sets with plain ``problem`` and ``answer`` columns (open-rs, DeepScaleR, AIME 2024, MATH-500)."""
    answer = answer_text(row["answer"])
    return Example(problem=text_field(row, "problem"), ground_truth=answer, raw_answer=answer)


def open_rs_row(row: Row) -> Example:
    """knoveleng/open-rs, the authors' training set: ``problem``, ``answer`` (bare), ``solution``."""
    return problem_answer_row(row)


def deepscaler_row(row: Row) -> Example:
    """agentica-org/DeepScaleR-Preview-Dataset: ``problem``, ``answer`` (bare LaTeX), ``solution``."""
    return problem_answer_row(row)


def dapo_row(row: Row) -> Example:
    """BytedTsinghua-SIA/DAPO-Math-17k: already verl rows; the bare problem is cut out of the Minerva prompt.

    The hub copy repeats each prompt about 100 times under different ``extra_info.index`` values, so the source
    index is not used: the pipeline deduplicates by problem text and indexes by content.
    """
    ground_truth = answer_text((row["reward_model"] or {}).get("ground_truth"))
    return Example(problem=dapo_problem(row["prompt"]), ground_truth=ground_truth, raw_answer=ground_truth)


def math_lighteval_row(row: Row) -> Example:
    """DigitalLearningGmbH/MATH-lighteval: ``problem``, ``solution``; the ground truth is the solution's last box."""
    solution = text_field(row, "solution")
    return Example(problem=text_field(row, "problem"), ground_truth=boxed_answer(solution), raw_answer=solution)


def gsm8k_row(row: Row) -> Example:
    """openai/gsm8k ``main``: ``question``, ``answer`` (worked solution ending ``#### <number>``)."""
    answer = text_field(row, "answer")
    return Example(problem=text_field(row, "question"), ground_truth=gsm8k_final_answer(answer), raw_answer=answer)


def aime2024_row(row: Row) -> Example:
    """HuggingFaceH4/aime_2024: ``id`` (AoPS problem id), ``problem``, ``answer``; indexed by ``id``."""
    return replace(problem_answer_row(row), source_id=str(row["id"]))


def aime2025_row(row: Row) -> Example:
    """opencompass/AIME2025 (configs ``AIME2025-I`` and ``AIME2025-II``): ``question``, ``answer``; no row id."""
    answer = answer_text(row["answer"])
    return Example(problem=text_field(row, "question"), ground_truth=answer, raw_answer=answer)


def amc_row(row: Row) -> Example:
    """AI-MO/aimo-validation-amc: ``id``, ``problem``, ``answer`` (a float, ``142.0``), ``url``; indexed by ``id``."""
    answer = answer_text(row["answer"])
    return Example(problem=text_field(row, "problem"), ground_truth=answer, raw_answer=answer, source_id=str(row["id"]))


def is_amc_2023(row: Row) -> bool:
    """AMC 2023 is the part of aimo-validation-amc (AMC 12 2022 and 2023) whose AoPS url names 2023."""
    return "2023_AMC" in str(row["url"])


def math500_row(row: Row) -> Example:
    """HuggingFaceH4/MATH-500: ``problem``, ``answer``, ``unique_id`` (``test/<subject>/<n>.json``), the index."""
    return replace(problem_answer_row(row), source_id=str(row["unique_id"]))


REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="open_rs",
            hub_id="knoveleng/open-rs",
            data_source="knoveleng/open-rs",
            columns=("problem", "answer"),
            to_example=open_rs_row,
            splits={"train": "train"},
            local_files={"train": ("data/train-*.parquet",)},
            description="the RPO authors' training set (7k problems)",
        ),
        DatasetSpec(
            name="deepscaler",
            hub_id="agentica-org/DeepScaleR-Preview-Dataset",
            data_source="agentica-org/DeepScaleR-Preview-Dataset",
            columns=("problem", "answer"),
            to_example=deepscaler_row,
            splits={"train": "train"},
            local_files={"train": ("deepscaler.json",)},
            description="40k competition problems (one JSON array)",
        ),
        DatasetSpec(
            name="dapo_math_17k",
            hub_id="BytedTsinghua-SIA/DAPO-Math-17k",
            data_source="math_dapo",
            columns=("prompt", "reward_model"),
            to_example=dapo_row,
            splits={"train": "train"},
            local_files={"train": ("data/dapo-math-17k.parquet",)},
            description="DAPO's training set, deduplicated (~1.79M hub rows -> ~17.9k prompts)",
        ),
        DatasetSpec(
            name="math_lighteval",
            hub_id="DigitalLearningGmbH/MATH-lighteval",
            data_source="DigitalLearningGmbH/MATH-lighteval",
            columns=("problem", "solution"),
            to_example=math_lighteval_row,
            splits={"train": "train", "test": "test"},
            local_files={"train": ("data/train-*.parquet",), "test": ("data/test-*.parquet",)},
            description="MATH (Hendrycks) 7.5k train / 5k test",
        ),
        DatasetSpec(
            name="gsm8k",
            hub_id="openai/gsm8k",
            data_source="openai/gsm8k",
            columns=("question", "answer"),
            to_example=gsm8k_row,
            splits={"train": "train", "test": "test"},
            local_files={"train": ("main/train-*.parquet",), "test": ("main/test-*.parquet",)},
            hub_configs=("main",),
            description="grade-school math, config 'main'",
        ),
        DatasetSpec(
            name="aime2024",
            hub_id="HuggingFaceH4/aime_2024",
            data_source="aime2024",
            columns=("id", "problem", "answer"),
            to_example=aime2024_row,
            splits={"test": "train"},
            local_files={"test": ("data/train-*.parquet",)},
            description="AIME 2024 I+II, 30 problems (evaluation)",
        ),
        DatasetSpec(
            name="aime2025",
            hub_id="opencompass/AIME2025",
            data_source="aime2025",
            columns=("question", "answer"),
            to_example=aime2025_row,
            splits={"test": "test"},
            local_files={"test": ("aime2025-I.jsonl", "aime2025-II.jsonl")},
            hub_configs=("AIME2025-I", "AIME2025-II"),
            description="AIME 2025 I+II, 30 problems (evaluation)",
        ),
        DatasetSpec(
            name="amc2023",
            hub_id="AI-MO/aimo-validation-amc",
            data_source="amc2023",
            columns=("id", "problem", "answer", "url"),
            to_example=amc_row,
            splits={"test": "train"},
            local_files={"test": ("data/train-*.parquet",)},
            keep=is_amc_2023,
            description="AMC 12 2023 problems of AI-MO's AMC validation set (evaluation)",
        ),
        DatasetSpec(
            name="math500",
            hub_id="HuggingFaceH4/MATH-500",
            data_source="HuggingFaceH4/MATH-500",
            columns=("problem", "answer", "unique_id"),
            to_example=math500_row,
            splits={"test": "test"},
            local_files={"test": ("test.jsonl",)},
            description="OpenAI's 500-problem MATH test subset (evaluation)",
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    """The registered spec called ``name``; an unknown name lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown data set {name!r}; known: {sorted(REGISTRY)}") from None
