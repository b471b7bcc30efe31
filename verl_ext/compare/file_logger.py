"""Reading a run's metrics back from verl's file logger (``VERL_FILE_LOGGER_PATH``, one ``{"step", "data"}`` JSON
object a line): one of the compare tool's sources, also read by the one-run summary and the learning testbed."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Iterable, Optional

VAL_ACC_KEY = re.compile(r"^val-core/(?P<source>.+)/acc/mean@(?P<n>\d+)$")


def metrics_by_step(metric_lines: Iterable[dict]) -> dict[int, dict]:
    """Per step, every metric logged for it (verl may log one step in several lines: they are merged)."""
    by_step: dict[int, dict] = {}
    for line in metric_lines:
        by_step.setdefault(int(line["step"]), {}).update(line.get("data", {}))
    return dict(sorted(by_step.items()))


def read_metrics(path: Path) -> dict[int, dict]:
    """:func:`metrics_by_step` of a file logger's JSONL; a clear error for a missing file or a malformed line."""
    if not path.is_file():
        raise FileNotFoundError(
            f"no metrics file at {path} (verl's file logger writes it when trainer.logger has 'file')"
        )
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON line of verl's file logger ({error})") from None
        if not isinstance(line, dict) or "step" not in line:
            raise ValueError(f"{path}:{number}: expected an object with 'step' and 'data', got {text[:80]!r}")
        lines.append(line)
    return metrics_by_step(lines)


def val_accuracy(data: dict) -> Optional[float]:
    """The validation accuracy in one logged step (verl's ``val-core/<source>/acc/mean@<n>``), None when the step
    ran no validation. With several data sources, their mean."""
    values = [float(v) for k, v in data.items() if VAL_ACC_KEY.match(k)]
    return statistics.fmean(values) if values else None
