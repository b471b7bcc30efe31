"""Stable per-prompt keys for the RPO experience cache.

The experience cache holds one earlier answer per *training prompt*, so every prompt needs a key that is the same in
every epoch, after a shuffle and after a resume. verl gives us no such key for free: ``RLHFDataset`` copies
``extra_info.index`` into the batch and silently turns a missing index into ``0``, so a dataset without indices
would map every prompt onto one cache entry. This module builds the key and checks a whole training set up front,
so that such a dataset fails at start-up with a message naming the file and the field instead of training on the
wrong prefixes.

Two key modes:

- ``"index"``: ``f"{data_source}:{extra_info['index']}"``. Cheap and readable; needs a unique index per row.
- ``"content"``: the sha1 of ``data_source`` and the canonical JSON of the prompt messages. Needs no index, and
  identical prompts share one entry on purpose (DAPO-Math-17k on the Hub repeats each prompt ~100 times).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

KeyMode = Literal["index", "content"]
KEY_MODES: tuple[str, ...] = get_args(KeyMode)

INDEX_FIELD = "extra_info.index"
"""The dataset field that ``"index"`` keys are built from, as named in error messages."""

MAX_EXAMPLES = 5
"""How many offending rows or keys an error message lists; the counts are always complete."""


class DatasetKeyError(ValueError):
    """A training set cannot be keyed: rows without an index, or several rows sharing one key."""


def check_key_mode(mode: str) -> KeyMode:
    """Return ``mode`` if it is a known key mode; raise a ``ValueError`` that lists the known ones otherwise."""
    if mode not in KEY_MODES:
        raise ValueError(f"unknown RPO cache key mode {mode!r}: expected one of {list(KEY_MODES)}")
    return mode  # type: ignore[return-value]


def prompt_key(data_source: str, extra_info: Mapping[str, Any] | None, messages: Any, mode: KeyMode) -> str:
    """Return the experience-cache key of one prompt.

    Args:
        data_source: the row's ``data_source`` column; part of the key so that two datasets mixed in one training
            set may reuse the same indices.
        extra_info: the row's ``extra_info`` dict (read in ``"index"`` mode only).
        messages: the row's prompt messages, a list of ``{"role", "content"}`` dicts, or the numpy object array of
            dicts that pandas returns for a parquet list column (read in ``"content"`` mode only).
        mode: ``"index"`` or ``"content"``, see the module docstring.

    Raises:
        ValueError: ``data_source`` is not a non-empty string, ``mode`` is unknown, or (``"index"`` mode) the row has
            no usable ``extra_info.index``.
    """
    check_key_mode(mode)
    if not isinstance(data_source, str) or not data_source:
        raise ValueError(f"data_source must be a non-empty string to build an RPO cache key, got {data_source!r}")
    if mode == "index":
        index = _index_of(extra_info)
        if index is None:
            raise ValueError(
                f"{INDEX_FIELD} is missing or null (extra_info={extra_info!r}); 'index' cache keys need a unique "
                "index per row: add it in data preparation, or use the 'content' key mode"
            )
        return f"{data_source}:{index}"
    canonical = json.dumps([data_source, _to_json_value(messages)], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyProblems:
    """What is wrong with the keys of a training set; built by :func:`find_key_problems`.

    Row numbers are 0-based positions in the frame (not its pandas index labels), so they match the row order of
    the parquet file the frame was read from.
    """

    source_name: str
    mode: KeyMode
    num_rows: int
    missing_rows: tuple[int, ...]
    """Rows without a usable ``extra_info.index`` (``"index"`` mode only)."""
    duplicates: dict[str, tuple[int, ...]]
    """Each key shared by several rows, with those rows."""

    @property
    def ok(self) -> bool:
        """True when the set can be keyed: duplicates are fatal in ``"index"`` mode only.

        In ``"content"`` mode a duplicate key means the same prompt appears twice, and sharing its cache entry is the
        intent; in ``"index"`` mode it means two rows claim one index, which may be two different prompts.
        """
        return not self.missing_rows and (self.mode == "content" or not self.duplicates)

    def describe(self) -> str:
        """A multi-line summary naming the file, the field, counts and up to :data:`MAX_EXAMPLES` examples each."""
        lines = [f"{self.source_name}: {self.num_rows} rows, cache key mode {self.mode!r}"]
        if self.missing_rows:
            examples = ", ".join(str(row) for row in self.missing_rows[:MAX_EXAMPLES])
            lines.append(f"  {len(self.missing_rows)} rows have no {INDEX_FIELD} (missing or null), e.g. rows "
                         f"{examples}")
        if self.duplicates:
            lines.append(f"  {len(self.duplicates)} keys are shared by several rows, e.g.:")
            for key, rows in list(self.duplicates.items())[:MAX_EXAMPLES]:
                shown = ", ".join(str(row) for row in rows[:MAX_EXAMPLES])
                more = f" (+{len(rows) - MAX_EXAMPLES} more)" if len(rows) > MAX_EXAMPLES else ""
                lines.append(f"    {key!r}: rows {shown}{more}")
        return "\n".join(lines)


def find_key_problems(frame: pd.DataFrame, source_name: str, mode: KeyMode, *,
                      prompt_column: str = "prompt") -> KeyProblems:
    """Key every row of a training set and report missing indices and duplicated keys, without raising on them.

    Args:
        frame: the training set as verl's ``RLHFDataset`` reads it: columns ``data_source``, ``extra_info`` and
            (``"content"`` mode) ``prompt_column``.
        source_name: the file the frame came from, used in messages.
        mode: the cache key mode.
        prompt_column: the column holding the prompt messages (verl's ``data.prompt_key``).

    Raises:
        DatasetKeyError: a column the mode needs is absent, or a row's ``data_source`` is not a non-empty string.
    """
    check_key_mode(mode)
    needed = ["data_source", "extra_info"] if mode == "index" else ["data_source", prompt_column]
    absent = [column for column in needed if column not in frame.columns]
    if absent:
        raise DatasetKeyError(f"{source_name}: column(s) {absent} missing; cache key mode {mode!r} needs {needed} "
                              f"(found {list(frame.columns)})")

    missing_rows: list[int] = []
    rows_by_key: dict[str, list[int]] = {}
    unread = [None] * len(frame)  # the column the mode does not read
    extra_infos = frame["extra_info"].to_numpy() if mode == "index" else unread
    prompts = frame[prompt_column].to_numpy() if mode == "content" else unread
    for row, (data_source, extra_info, messages) in enumerate(
            zip(frame["data_source"].to_numpy(), extra_infos, prompts, strict=True)):
        if mode == "index" and _index_of(extra_info) is None:
            missing_rows.append(row)
            continue
        try:
            key = prompt_key(data_source, extra_info, messages, mode)
        except ValueError as exc:
            raise DatasetKeyError(f"{source_name}: row {row} cannot be keyed: {exc}") from exc
        rows_by_key.setdefault(key, []).append(row)

    duplicates = {key: tuple(rows) for key, rows in rows_by_key.items() if len(rows) > 1}
    return KeyProblems(source_name=source_name, mode=mode, num_rows=len(frame), missing_rows=tuple(missing_rows),
                       duplicates=duplicates)


def check_dataset_keys(frame: pd.DataFrame, source_name: str, mode: KeyMode, *, prompt_column: str = "prompt") -> None:
    """Fail at start-up if the training set cannot be keyed in ``mode``; see :class:`KeyProblems` for the rules.

    Raises:
        DatasetKeyError: with :meth:`KeyProblems.describe` and what to do about it.
    """
    problems = find_key_problems(frame, source_name, mode, prompt_column=prompt_column)
    if not problems.ok:
        raise DatasetKeyError(
            f"the RPO experience cache cannot key this training set:\n{problems.describe()}\n"
            f"Give every row a unique {INDEX_FIELD} per data_source (deduplicate the prompts in data preparation), "
            "or set the cache key mode to 'content'."
        )


def _index_of(extra_info: Any) -> int | float | str | None:
    """The row's ``extra_info.index`` normalised so that the same index always gives the same key, or None.

    pandas turns an integer column with a gap into floats (``7`` -> ``7.0``) and numpy hands out ``np.int64``; both
    must key as ``"7"``. A NaN is pandas' spelling of a missing value.
    """
    if not isinstance(extra_info, Mapping):
        return None
    index = extra_info.get("index")
    if index is None or isinstance(index, (bool, np.bool_)):
        return None
    if isinstance(index, (int, np.integer)):
        return int(index)
    if isinstance(index, (float, np.floating)):
        if math.isnan(index):
            return None
        return int(index) if float(index).is_integer() else float(index)
    if isinstance(index, str):
        return index if index else None
    return None


def _to_json_value(value: Any) -> Any:
    """Turn prompt messages as pandas/pyarrow return them (numpy arrays, numpy scalars) into plain JSON values.

    The content key must not depend on whether the messages came from a parquet file or from Python code.
    """
    if isinstance(value, Mapping):
        return {str(key): _to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_to_json_value(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
