"""How a shared-prefix pass reports its sharing (``verl_ext/shared_prefix/packing_metrics.py``)."""

from __future__ import annotations

import pytest

from verl_ext.shared_prefix.packing_metrics import (
    PACKED_TOKENS,
    ROW_TOKENS,
    PassMetricsTap,
    frac_metric,
    packed_token_frac,
    pop_packing_metrics,
    require_packing,
)


def test_packed_token_frac_sums_nested_per_rank_and_per_mini_batch_reports():
    update = {f"actor/{PACKED_TOKENS}": [[30, 10], [20, 40]], f"actor/{ROW_TOKENS}": [[100, 50], [50, 100]],
              "actor/pg_loss": [0.1]}
    assert packed_token_frac(update, prefix="actor/") == pytest.approx(100 / 300)
    assert pop_packing_metrics(update, prefix="actor/") == pytest.approx(100 / 300)
    assert update == {"actor/pg_loss": [0.1]}
    assert packed_token_frac({}) is None
    assert frac_metric("update") == "rpo/shared_prefix/packed_token_frac/update"
    with pytest.raises(ValueError, match="unknown pass"):
        frac_metric("critic")


def test_a_pass_without_a_packing_report_is_an_error():
    assert require_packing({PACKED_TOKENS: [5], ROW_TOKENS: [10]}, "old_log_prob") == 0.5
    with pytest.raises(RuntimeError, match="the ref pass reported no packed micro-batches.*verl_ext_shared_prefix"):
        require_packing({"mfu": 0.1}, "ref")


def test_the_tap_keeps_the_last_calls_metrics_once():
    tap = PassMetricsTap(lambda output: output["metrics"])
    method = tap.wrap(lambda batch: {"metrics": {PACKED_TOKENS: [batch]}, "log_probs": batch})
    assert method(3) == {"metrics": {PACKED_TOKENS: [3]}, "log_probs": 3}
    assert tap.take() == {PACKED_TOKENS: [3]}
    assert tap.take() == {}
