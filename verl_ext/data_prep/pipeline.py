"""Source rows -> deduplicated, indexed verl rows -> parquet.

Every data set is deduplicated by exact problem text (first occurrence kept). DAPO-Math-17k needs it (each prompt
is repeated ~100 times on the hub); elsewhere it is what makes a content-derived ``extra_info.index`` unique, and a
repeated prompt would only be a second, colliding entry in the RPO experience cache. Repeats whose ground truth
differs from the kept one are counted separately: they point at a data error in the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.data_prep.answers import UnusableRow
from verl_ext.data_prep.example import content_index, to_verl_row
from verl_ext.data_prep.prompts import SYSTEM_PROMPT
from verl_ext.data_prep.sources import iter_rows
from verl_ext.data_prep.specs import DatasetSpec


@dataclass
class PrepareStats:
    """What happened to the source rows; ``first_unusable`` says why the first skipped row was skipped."""

    read: int = 0
    written: int = 0
    filtered_out: int = 0
    unusable: int = 0
    duplicates: int = 0
    conflicting_duplicates: int = 0
    first_unusable: str | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def has_problems(self) -> bool:
        """True when rows were skipped as unusable or repeated a problem with another ground truth."""
        return bool(self.unusable or self.conflicting_duplicates)

    def summary(self) -> str:
        text = (
            f"read {self.read}, wrote {self.written}, duplicates dropped {self.duplicates} "
            f"(with another ground truth: {self.conflicting_duplicates}), filtered out {self.filtered_out}, "
            f"unusable {self.unusable}"
        )
        return text + (f" (first: {self.first_unusable})" if self.first_unusable else "")


def prepare(
    spec: DatasetSpec,
    split: str,
    *,
    local_path: str | Path | None = None,
    max_samples: int | None = None,
    system_prompt: str | None = SYSTEM_PROMPT,
) -> tuple[pa.Table, PrepareStats]:
    """verl rows for ``spec``'s ``split``, at most ``max_samples`` of them (the first ones, after deduplication).

    The rows become an Arrow table with plain ``string`` columns, the types verl's own preprocessing writes, so the
    files can be listed together in ``data.train_files`` (``datasets`` refuses to concatenate ``large_string`` with
    ``string``).
    """
    if max_samples is not None and max_samples <= 0:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    stats = PrepareStats()
    ground_truth_by_problem: dict[str, str] = {}
    indices: dict[str, str] = {}
    records: list[dict[str, Any]] = []
    for source, row_number, row in iter_rows(spec, split, local_path):
        where = f"{source}, row {row_number}"
        if source not in stats.sources:
            stats.sources.append(source)
        stats.read += 1
        check_columns(spec, row, where)
        if spec.keep is not None and not spec.keep(row):
            stats.filtered_out += 1
            continue
        try:
            example = spec.to_example(row)
        except UnusableRow as error:
            stats.unusable += 1
            stats.first_unusable = stats.first_unusable or f"{where}: {error}"
            continue
        kept_ground_truth = ground_truth_by_problem.get(example.problem)
        if kept_ground_truth is not None:
            stats.duplicates += 1
            stats.conflicting_duplicates += int(kept_ground_truth != example.ground_truth)
            continue
        ground_truth_by_problem[example.problem] = example.ground_truth
        index = example.source_id if example.source_id is not None else content_index(example.problem)
        if index in indices:
            raise ValueError(
                f"{where}: index {index!r} was already given to {indices[index]}; {spec.name}'s row ids must be unique"
            )
        indices[index] = where
        records.append(
            to_verl_row(
                example,
                data_source=spec.data_source,
                dataset=spec.hub_id,
                split=split,
                index=index,
                system_prompt=system_prompt,
            )
        )
        if max_samples is not None and len(records) >= max_samples:
            break
    stats.written = len(records)
    if not records:
        raise ValueError(f"{spec.name} [{split}]: no usable row in {stats.sources or 'the source'}; {stats.summary()}")
    return pa.Table.from_pylist(records), stats


def check_columns(spec: DatasetSpec, row: dict[str, Any], where: str) -> None:
    """Fail on the first row that lacks a column the spec reads: a wrong file or a changed hub layout."""
    missing = [column for column in spec.columns if column not in row]
    if missing:
        raise ValueError(
            f"{where}: missing column(s) {missing} that {spec.name} ({spec.hub_id}) needs; "
            f"columns present: {sorted(row)}"
        )


def write_parquet(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` (parents created), the file verl's ``data.train_files``/``val_files`` read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
