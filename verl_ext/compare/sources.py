"""Where a run's metrics come from: one reader per logger verl's tracker writes with, in a registry tried in order,
each giving the same per-step view (:class:`RunHistory`) so that the comparison never knows which logger ran.

* ``verl_jsonl``: verl's file logger (``trainer.logger`` with ``file``, ``VERL_FILE_LOGGER_PATH``).
* ``tensorboard``: a directory of tensorboard event files (``TENSORBOARD_DIR``), read by tensorboard's own reader.
* ``wandb_offline``: a wandb offline run directory. wandb ships no reader for its offline run files (only its
  ``wandb-core`` binary reads them, to sync), so this source explains how to get the run instead of guessing a
  private file format.
* ``wandb``: a run on a wandb server, ``entity/project/run_id``, read through wandb's public API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from verl_ext.compare.file_logger import read_metrics


class RunSourceError(ValueError):
    """A run that cannot be read: the message names the run and what was expected."""


@dataclass(frozen=True)
class RunHistory:
    """One run's metrics by training step, whichever logger wrote them."""

    location: str
    source: str
    by_step: dict[int, dict[str, float]]


@dataclass(frozen=True)
class RunSource:
    name: str
    matches: Callable[[str], bool]
    read: Callable[[str], dict[int, dict[str, float]]]


RUN_SOURCES: dict[str, RunSource] = {}


def register_run_source(name: str, matches: Callable[[str], bool]) -> Callable:
    """Register ``read(location) -> {step: {metric: value}}`` for the locations ``matches`` accepts; sources are
    tried in registration order."""

    def decorator(read: Callable[[str], dict[int, dict[str, float]]]) -> Callable:
        if name in RUN_SOURCES:
            raise ValueError(f"run source {name!r} is already registered")
        RUN_SOURCES[name] = RunSource(name, matches, read)
        return read

    return decorator


def read_run(location: str) -> RunHistory:
    """The run at ``location`` through the first registered source that accepts it."""
    for source in RUN_SOURCES.values():
        if source.matches(location):
            by_step = source.read(location)
            if not by_step:
                raise RunSourceError(f"{location}: the {source.name} run logged no metrics")
            return RunHistory(location, source.name, by_step)
    raise RunSourceError(
        f"{location}: expected a verl file-logger JSONL file, a tensorboard directory (events.out.tfevents.*), a "
        "wandb offline run directory or a wandb run path entity/project/run_id; it is none of them"
    )


def scalar_rows_by_step(rows: Iterable[Mapping[str, Any]], step_key: str) -> dict[int, dict[str, float]]:
    """Rows of logged values (each with ``step_key``) merged per step, keeping the finite numbers: what wandb's and
    tensorboard's histories hold beside metrics (media, tables, their own ``_``-prefixed fields) is not a metric."""
    by_step: dict[int, dict[str, float]] = {}
    for row in rows:
        step = row.get(step_key)
        if step is None:
            continue
        values = by_step.setdefault(int(step), {})
        for key, value in row.items():
            if key.startswith("_") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                values[key] = float(value)
    return dict(sorted(by_step.items()))


def _is_jsonl_file(location: str) -> bool:
    return location.endswith(".jsonl") or Path(location).is_file()


@register_run_source("verl_jsonl", _is_jsonl_file)
def read_verl_jsonl(location: str) -> dict[int, dict[str, float]]:
    try:
        by_step = read_metrics(Path(location))
    except (FileNotFoundError, ValueError) as error:
        raise RunSourceError(str(error)) from None
    return scalar_rows_by_step(({"step": step, **data} for step, data in by_step.items()), "step")


def _event_files(location: str) -> list[Path]:
    return sorted(Path(location).glob("events.out.tfevents.*"))


@register_run_source("tensorboard", lambda location: Path(location).is_dir() and bool(_event_files(location)))
def read_tensorboard(location: str) -> dict[int, dict[str, float]]:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    accumulator = EventAccumulator(location, size_guidance={SCALARS: 0})  # 0: keep every point, not a sample
    accumulator.Reload()
    rows = ({"step": event.step, tag: event.value} for tag in accumulator.Tags()[SCALARS]
            for event in accumulator.Scalars(tag))
    return scalar_rows_by_step(rows, "step")


def _is_wandb_offline_run(location: str) -> bool:
    path = Path(location)
    return path.is_dir() and (bool(list(path.glob("run-*.wandb"))) or bool(list(path.glob("offline-run-*"))))


@register_run_source("wandb_offline", _is_wandb_offline_run)
def refuse_wandb_offline(location: str) -> dict[int, dict[str, float]]:
    import wandb

    raise RunSourceError(
        f"{location}: a wandb offline run. wandb {wandb.__version__} ships no reader for offline run files (only "
        f"wandb-core reads them, to upload). Either `wandb sync {location}` and pass the synced run as "
        "entity/project/run_id, or pass the same run's verl file-logger JSONL (trainer.logger with 'file'; the "
        "repro scripts write it beside wandb)"
    )


def _is_wandb_run_path(location: str) -> bool:
    parts = location.split("/")
    return len(parts) == 3 and all(parts) and not Path(location).exists()


@register_run_source("wandb", _is_wandb_run_path)
def read_wandb_run(location: str) -> dict[int, dict[str, float]]:
    """Every logged row through wandb's public API (``Api().run(path).scan_history()``), by verl's step (wandb's
    ``_step``, which verl's tracker sets to the training step)."""
    import wandb

    try:
        run = wandb.Api().run(location)
        return scalar_rows_by_step(run.scan_history(), "_step")
    except (wandb.errors.Error, ValueError) as error:  # not logged in, no network, no such run
        raise RunSourceError(f"{location}: no such file or directory here, and wandb could not read it as the run "
                             f"entity/project/run_id ({error})") from None
