"""The demo's closing summary, from verl file-logger lines written here."""

from __future__ import annotations

import json

import pytest

from verl_ext.compare.file_logger import read_metrics
from verl_ext.experiments import run_summary

VAL = "val-core/tiny_arith/acc/mean@1"


def write_metrics(path, steps):
    path.write_text("\n".join(json.dumps({"step": step, "data": data}) for step, data in steps) + "\n")
    return path


def train_step(step, generated, estimate, hit, **extra):
    return step, {"training/global_step": step, "rpo/generated_tokens": generated,
                  "rpo/full_rollout_tokens_est": estimate, "rpo/cache_hit_rate": hit, **extra}


def test_summary_reports_tokens_hits_accuracy_and_files(tmp_path, capsys):
    metrics = write_metrics(tmp_path / "m.jsonl", [
        (0, {VAL: 0.5}), train_step(1, 900, 600, 0.0), train_step(2, 100, 600, 1.0), (2, {VAL: 0.75}),
    ])
    assert run_summary.main([str(metrics), "--tensorboard", str(tmp_path / "tb")]) == 0
    out = capsys.readouterr().out
    assert "2 training steps" in out
    assert "1,000 of a full-path estimate of 1,200 (83%; 17% saved)" in out
    assert "0.00 1.00" in out
    assert "0.500 at step 0 -> 0.750 at step 2" in out
    assert str(tmp_path / "tb") in out


def test_a_full_path_run_has_no_estimate_or_hit_rate(tmp_path):
    by_step = read_metrics(write_metrics(tmp_path / "m.jsonl", [(1, {"training/global_step": 1,
                                                                     "rpo/generated_tokens": 50})]))
    lines = run_summary.summary_lines(by_step, {})
    assert lines[1].strip() == "generated tokens   50 (full path: rpo.enable=false)"
    assert not any("cache hit" in line for line in lines)


@pytest.mark.parametrize(("content", "message"), [
    (None, "no metrics file"),
    ('{"step": 1, "data": {}}\nnot json\n', "m.jsonl:2"),
    ('{"step": 0, "data": {"' + VAL + '": 0.5}}\n', "no training step"),
])
def test_bad_metrics_files_exit_with_a_clear_message(tmp_path, capsys, content, message):
    path = tmp_path / "m.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        run_summary.main([str(path)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
