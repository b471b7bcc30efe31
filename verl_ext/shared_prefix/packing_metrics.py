"""How much sharing a shared-prefix pass got, from the engine to the dashboard.

Every pass with the shared-prefix columns adds two entries to the metrics verl's workers return: the tokens the
packed micro-batches held (:data:`PACKED_TOKENS`) and the tokens of the same rows unpacked (:data:`ROW_TOKENS`),
one number per rank. verl gathers worker metrics over the data-parallel ranks and, for the update, over
mini-batches, as nested lists; :func:`packed_token_frac` sums them and divides. The trainer logs the result per pass
as ``rpo/shared_prefix/packed_token_frac/<pass>``: 1.0 means nothing was shared, ``(P + G*S) / (G*(P + S))`` is a
group of G rows with a P-token shared part and S-token suffixes packed whole.

No verl or torch: the trainer and the tests import it anywhere.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, MutableMapping, Optional

PACKED_TOKENS = "shared_prefix/packed_tokens"
ROW_TOKENS = "shared_prefix/row_tokens"
FRAC_METRIC = "rpo/shared_prefix/packed_token_frac/{pass_name}"
IDEAL_METRIC = "rpo/shared_prefix/whole_group_packed_token_frac"
"""The batch's packed over row tokens were every group packed whole: the floor of the per-pass fractions."""
SPLIT_GROUPS_METRIC = "rpo/shared_prefix/split_groups"
"""Groups whose rows the batch balancing dealt to more than one data-parallel rank."""
PASSES = ("old_log_prob", "ref", "update")


def _flat_sum(value: Any) -> float:
    if isinstance(value, Mapping):
        raise TypeError(f"expected numbers or nested lists of numbers, got a mapping: {value!r}")
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return float(sum(_flat_sum(item) for item in value))
    return float(value)


def packed_token_frac(worker_metrics: Mapping[str, Any], prefix: str = "") -> Optional[float]:
    """Packed tokens over row tokens in a pass's worker metrics (keys with ``prefix``, e.g. ``actor/``); None when
    the pass packed nothing (no shared-prefix columns, or an engine without the shared-prefix passes)."""
    packed, rows = worker_metrics.get(prefix + PACKED_TOKENS), worker_metrics.get(prefix + ROW_TOKENS)
    if packed is None or rows is None:
        return None
    total = _flat_sum(rows)
    return _flat_sum(packed) / total if total else None


def pop_packing_metrics(worker_metrics: MutableMapping[str, Any], prefix: str = "") -> Optional[float]:
    """:func:`packed_token_frac`, removing the two raw entries (verl's metric reduction would average them)."""
    frac = packed_token_frac(worker_metrics, prefix)
    worker_metrics.pop(prefix + PACKED_TOKENS, None)
    worker_metrics.pop(prefix + ROW_TOKENS, None)
    return frac


def frac_metric(pass_name: str) -> str:
    if pass_name not in PASSES:
        raise ValueError(f"unknown pass {pass_name!r}; expected one of {PASSES}")
    return FRAC_METRIC.format(pass_name=pass_name)


def require_packing(worker_metrics: MutableMapping[str, Any], pass_name: str, prefix: str = "") -> float:
    """:func:`pop_packing_metrics` for a pass that carried the shared-prefix columns: no report means the workers
    ran verl's own engine, which ignores the columns and trains unshared, so that is an error."""
    frac = pop_packing_metrics(worker_metrics, prefix)
    if frac is None:
        raise RuntimeError(
            f"rpo.shared_prefix=true but the {pass_name} pass reported no packed micro-batches: verl's workers did "
            f"not build the shared-prefix engine (the verl.plugins entry point verl_ext_shared_prefix did not load "
            f"in the worker processes; check that they run the environment this package is installed in)"
        )
    return frac


class PassMetricsTap:
    """Keeps the worker metrics of the last call of the worker-group methods it wraps.

    verl's trainer reads only the MFU from a log-prob pass's metrics; the trainer wraps the worker group's log-prob
    methods with :meth:`wrap` and takes the packing report after each pass with :meth:`take`."""

    def __init__(self, read_metrics: Callable[[Any], Mapping[str, Any]]) -> None:
        self._read = read_metrics
        self._last: Optional[dict[str, Any]] = None

    def wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def tapped(*args: Any, **kwargs: Any) -> Any:
            output = method(*args, **kwargs)
            self._last = dict(self._read(output) or {})
            return output

        return tapped

    def take(self) -> dict[str, Any]:
        """The last call's metrics (empty if none since the last take)."""
        last, self._last = self._last or {}, None
        return last
