"""Reading a data set's rows, from the hub or from a local copy laid out like the hub repository.

The hub path uses ``datasets.load_dataset(hub_id, config, split=...)``, one call per config. A local copy is read
directly with pyarrow / json (no ``datasets`` cache, streamed in batches so DAPO's 1.79M rows stay cheap):

* a file (``.parquet``, ``.jsonl``, or ``.json`` holding either a JSON array or JSON lines) is read as it is;
* a directory is searched for the spec's hub file patterns of the requested split, e.g. ``data/train-*.parquet``.

Rows come out as ``(source, row_number, row)``, ``source`` naming the file or hub split for error messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from verl_ext.data_prep.specs import DatasetSpec

SUPPORTED_SUFFIXES = (".parquet", ".jsonl", ".json")
PARQUET_BATCH_ROWS = 4096

SourceRow = tuple[str, int, dict[str, Any]]


def iter_rows(spec: DatasetSpec, split: str, local_path: str | Path | None = None) -> Iterator[SourceRow]:
    """All rows of ``spec``'s ``split``: from ``local_path`` when given, otherwise from the hub."""
    if split not in spec.splits:
        raise ValueError(f"{spec.name}: unknown split {split!r}; available: {sorted(spec.splits)}")
    if local_path is None:
        yield from _iter_hub_rows(spec, split)
        return
    for file in local_files(spec, split, Path(local_path)):
        yield from _iter_file_rows(file)


def local_files(spec: DatasetSpec, split: str, local_path: Path) -> list[Path]:
    """The files of a local copy to read for ``split``: the path itself, or the hub patterns under a directory."""
    if local_path.is_file():
        return [local_path]
    if not local_path.is_dir():
        raise FileNotFoundError(f"{spec.name}: --local-path {local_path} is neither a file nor a directory")
    patterns = spec.local_files[split]
    files = sorted({file for pattern in patterns for file in local_path.glob(pattern) if file.is_file()})
    if not files:
        present = sorted(
            str(file.relative_to(local_path)) for file in local_path.rglob("*") if file.suffix in SUPPORTED_SUFFIXES
        )
        raise FileNotFoundError(
            f"{spec.name}: no file under {local_path} matches {list(patterns)} (the layout of {spec.hub_id}, "
            f"split {split!r}); data files found there: {present or 'none'}"
        )
    return files


def _iter_file_rows(file: Path) -> Iterator[SourceRow]:
    if file.suffix == ".parquet":
        rows = _parquet_rows(file)
    elif file.suffix in (".jsonl", ".json"):
        rows = _json_rows(file)
    else:
        raise ValueError(f"{file}: unsupported file type {file.suffix!r}; expected one of {SUPPORTED_SUFFIXES}")
    for row_number, row in enumerate(rows):
        yield str(file), row_number, row


def _parquet_rows(file: Path) -> Iterator[dict[str, Any]]:
    for batch in pq.ParquetFile(file).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        yield from batch.to_pylist()


def _json_rows(file: Path) -> Iterator[dict[str, Any]]:
    """A JSON array of objects, or one object per line (the hub accepts both under ``.json``)."""
    with file.open(encoding="utf-8") as handle:
        first = handle.read(1)
        while first.isspace():
            first = handle.read(1)
        handle.seek(0)
        records = json.load(handle) if first == "[" else (json.loads(line) for line in handle if line.strip())
        for record in records:
            if not isinstance(record, dict):
                raise ValueError(f"{file}: expected JSON objects (one per row), got {type(record).__name__}")
            yield record


def _iter_hub_rows(spec: DatasetSpec, split: str) -> Iterator[SourceRow]:
    from datasets import load_dataset  # imported here: reading local copies must not need it

    hub_split = spec.splits[split]
    for config in spec.hub_configs:
        source = f"hub:{spec.hub_id}" + (f"[{config}]" if config else "") + f":{hub_split}"
        for row_number, row in enumerate(load_dataset(spec.hub_id, config, split=hub_split)):
            yield source, row_number, row
