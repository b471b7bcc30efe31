"""verl_ext.compare end to end on runs logged by verl's own tracker (``verl.utils.tracking.Tracking``) to its file
logger, tensorboard and wandb in offline mode (``logged_runs``): every source the tool reads, the printed ratios and
differences against values computed from the raw metrics, the report and plots, and a clear refusal of what cannot
be compared."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from verl_ext.compare import cli
from verl_ext.compare.claims import ComparisonError, compare_runs
from verl_ext.compare.sources import RunHistory, RunSourceError, read_run, scalar_rows_by_step

VAL = "val-core/{source}/acc/mean@4"
SOURCES = ("tiny_arith", "other")
STEPS = 4
VALIDATED = (0, 2, 4)


def run_metrics(kind: str, shift: float = 0.0) -> dict[int, dict[str, float]]:
    """A run's metrics by step as verl's trainer logs them: validation alone at step 0, then training steps with
    costs, validation at steps 2 and 4; RPO runs add their diagnostics."""
    rpo = kind == "rpo"
    by_step: dict[int, dict[str, float]] = {}
    for step in range(STEPS + 1):
        data: dict[str, float] = {}
        if step > 0:
            data.update({
                "training/global_step": step,
                "timing_s/step": (4.0 if rpo else 10.0) + step,
                "timing_s/gen": (1.5 if rpo else 7.0) + 0.5 * step,
                "rpo/generated_tokens": (300.0 if rpo else 1000.0) * step,
                "response_length/mean": 40.0 + step if rpo else 50.0 + step,
            })
            if rpo:
                data.update({"rpo/cache_hit_rate": 0.25 * step, "rpo/no_signal_group_frac": 0.5,
                             "rpo/suffix_len_mean": 12.0})
        if step in VALIDATED:
            for index, source in enumerate(SOURCES):
                data[VAL.format(source=source)] = 0.25 + 0.05 * step + 0.1 * index + (0.0 if rpo else 0.02) + shift
        by_step[step] = data
    return by_step


WRITER = """
import json, sys
from verl.utils.tracking import Tracking
tracker = Tracking("compare-test", sys.argv[1], default_backend=["file", "tensorboard", "wandb"])
for step, data in sorted(json.loads(sys.argv[2]).items(), key=lambda item: int(item[0])):
    tracker.log(data=data, step=int(step))
tracker.finish()
"""


@pytest.fixture(scope="module")
def logged_runs(tmp_path_factory) -> dict[str, Path]:
    """Run directories ``rpo`` and ``full``, each with ``metrics.jsonl``, ``tensorboard/`` and ``wandb/``."""
    root = tmp_path_factory.mktemp("compare_runs")
    runs = {"rpo": run_metrics("rpo"), "full": run_metrics("full")}
    for name, by_step in runs.items():
        # One process per run: wandb keeps its directory for the life of its service.
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(root / name),
               "VERL_FILE_LOGGER_PATH": str(root / name / "metrics.jsonl"),
               "TENSORBOARD_DIR": str(root / name / "tensorboard")}
        (root / name).mkdir()
        subprocess.run([sys.executable, "-c", WRITER, name, json.dumps(by_step)], check=True, env=env, timeout=300,
                       capture_output=True)
    return {name: root / name for name in runs}


def write_jsonl(path: Path, by_step: dict[int, dict[str, float]]) -> Path:
    """A file-logger JSONL in verl's line format, for error cases the tracker would not write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"step": step, "data": data}) + "\n" for step, data in by_step.items()))
    return path


def _total(by_step, metric):
    return sum(data[metric] for step, data in by_step.items() if step > 0)


RPO, FULL = run_metrics("rpo"), run_metrics("full")
EXPECTED_RATIOS = {metric: _total(RPO, metric) / _total(FULL, metric)
                   for metric in ("rpo/generated_tokens", "timing_s/gen", "timing_s/step")}


def _compare(rpo_location, full_location, **kwargs):
    groups = {"rpo": [read_run(str(rpo_location))], "full": [read_run(str(full_location))]}
    return compare_runs(groups, "full", **kwargs)


@pytest.mark.parametrize("source", ["jsonl", "tensorboard"])
def test_compare_ratios_match_the_raw_metrics_whichever_logger_wrote_them(logged_runs, source):
    where = {"jsonl": "metrics.jsonl", "tensorboard": "tensorboard"}[source]
    result = _compare(logged_runs["rpo"] / where, logged_runs["full"] / where)
    assert result["steps"] == list(range(1, STEPS + 1))
    for metric, expected in EXPECTED_RATIOS.items():
        assert result["costs"][metric]["ratio"]["rpo"] == pytest.approx(expected, rel=1e-6)
        assert result["costs"][metric]["mean"]["full"] == pytest.approx(_total(FULL, metric), rel=1e-6)
    expected_length = statistics.fmean(d["response_length/mean"] for s, d in RPO.items() if s > 0)
    assert result["response_length"]["mean"]["rpo"] == pytest.approx(expected_length, rel=1e-6)
    validation = result["validation"]
    assert validation["last_step"] == 4 and validation["trained_steps"] == [2, 4]
    for source_name in SOURCES:
        key = VAL.format(source=source_name)
        bench = validation["benchmarks"][source_name]
        assert bench["last"]["difference"]["rpo"]["diff"] == pytest.approx(RPO[4][key] - FULL[4][key], abs=1e-6)
        over = statistics.fmean(RPO[s][key] - FULL[s][key] for s in (2, 4))
        assert bench["over_run"]["difference"]["rpo"]["diff"] == pytest.approx(over, abs=1e-6)
        assert bench["last"]["difference"]["rpo"]["interval"] is None  # one run each, no problem count
    hit_rate = result["diagnostics"]["rpo/cache_hit_rate"]["values"]
    assert hit_rate["rpo"] == [pytest.approx(statistics.fmean(0.25 * s for s in range(1, STEPS + 1)))]
    assert hit_rate["full"] == [None]


def test_compare_cli_prints_the_table_and_writes_the_report_and_plots(logged_runs, tmp_path, capsys):
    out = tmp_path / "report"
    code = cli.main([f"rpo={logged_runs['rpo'] / 'metrics.jsonl'}", f"full={logged_runs['full'] / 'tensorboard'}",
                     "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[-1] == "rpo/full"  # no --baseline: the last label is the baseline
    tokens_line = next(line for line in printed.splitlines() if line.startswith("generated tokens"))
    assert tokens_line.split()[-1] == f"{EXPECTED_RATIOS['rpo/generated_tokens']:.2f}"
    step_line = next(line for line in printed.splitlines() if line.startswith("step time (s)"))
    assert step_line.split()[-1] == f"{EXPECTED_RATIOS['timing_s/step']:.2f}"
    key = VAL.format(source="tiny_arith")
    val_line = next(line for line in printed.splitlines() if line.startswith("val tiny_arith mean@4, step 4"))
    assert val_line.split()[-1] == f"{RPO[4][key] - FULL[4][key]:+.3f}"
    assert "rpo/cache_hit_rate" in printed and "n/a" in printed
    import matplotlib.image

    for name in ("accuracy_vs_wallclock", "accuracy_vs_generated_tokens", "step_time"):
        image = matplotlib.image.imread(out / f"{name}.png")
        assert image.shape[0] > 100 and image.std() > 0  # drawn, not blank
        assert str(out / f"{name}.png") in printed
    report = (out / "report.md").read_text()
    assert "| generated tokens, steps 1-4 |" in report and "![step_time](step_time.png)" in report


def test_compare_pools_the_variance_of_seeds_for_the_accuracy_interval(tmp_path):
    rpo = [RunHistory(f"rpo{i}", "test", run_metrics("rpo", shift=0.01 * i)) for i in range(3)]
    full = [RunHistory(f"full{i}", "test", run_metrics("full", shift=0.02 * i)) for i in range(2)]
    result = compare_runs({"rpo": rpo, "full": full}, "full")
    key = VAL.format(source="other")
    a = [run.by_step[4][key] for run in rpo]
    b = [run.by_step[4][key] for run in full]
    pooled = (sum((x - statistics.fmean(a)) ** 2 for x in a) + sum((x - statistics.fmean(b)) ** 2 for x in b)) / 3
    half = 3.182446305284263 * math.sqrt(pooled * (1 / 3 + 1 / 2))  # t(0.975, 3 dof)
    interval = result["validation"]["benchmarks"]["other"]["last"]["difference"]["rpo"]["interval"]
    diff = statistics.fmean(a) - statistics.fmean(b)
    assert (interval.low, interval.high) == (pytest.approx(diff - half), pytest.approx(diff + half))
    assert "pooled over 5 runs" in interval.method
    assert result["costs"]["rpo/generated_tokens"]["values"]["rpo"] == [_total(RPO, "rpo/generated_tokens")] * 3


def test_compare_bounds_a_single_pairs_validation_noise_by_the_problem_count(logged_runs):
    result = _compare(logged_runs["rpo"] / "metrics.jsonl", logged_runs["full"] / "metrics.jsonl",
                      val_problems={"tiny_arith": 50})
    key = VAL.format(source="tiny_arith")
    a, b = RPO[4][key], FULL[4][key]
    half = 1.959963984540054 * math.sqrt((a * (1 - a) + b * (1 - b)) / (4 * 50))
    interval = result["validation"]["benchmarks"]["tiny_arith"]["last"]["difference"]["rpo"]["interval"]
    assert interval.high - interval.low == pytest.approx(2 * half)
    assert interval.method == "validation sampling bound"
    assert result["validation"]["benchmarks"]["other"]["last"]["difference"]["rpo"]["interval"] is None


def test_compare_refuses_a_wandb_offline_run_and_says_what_to_pass_instead(logged_runs):
    offline = next((logged_runs["rpo"] / "wandb").glob("offline-run-*"))
    assert list(offline.glob("run-*.wandb")), "wandb wrote no offline run file"
    with pytest.raises(RunSourceError, match=r"wandb offline run.*no reader.*wandb sync.*verl file-logger JSONL"):
        read_run(str(offline))


def test_compare_reads_wandb_history_rows_by_step_and_keeps_only_numbers():
    rows = [{"_step": 0, "_runtime": 3.0, "val-core/x/acc/mean@1": 0.5},
            {"_step": 1, "timing_s/step": 2, "table": {"_type": "table"}, "flag": True, "bad": float("nan")},
            {"_step": 1, "rpo/generated_tokens": 10}, {"no_step": 1}]
    assert scalar_rows_by_step(rows, "_step") == {
        0: {"val-core/x/acc/mean@1": 0.5}, 1: {"timing_s/step": 2.0, "rpo/generated_tokens": 10.0}}


def test_compare_names_the_run_and_the_metric_a_baseline_never_logged(tmp_path):
    full = {step: {k: v for k, v in data.items() if k != "timing_s/gen"} for step, data in FULL.items()}
    paths = write_jsonl(tmp_path / "rpo.jsonl", RPO), write_jsonl(tmp_path / "full.jsonl", full)
    with pytest.raises(ComparisonError, match=rf"{paths[1]} never logged timing_s/gen"):
        _compare(*paths)


def test_compare_refuses_runs_validated_on_different_sets(tmp_path):
    full = {step: {k.replace("/other/", "/aime/"): v for k, v in data.items()} for step, data in FULL.items()}
    paths = write_jsonl(tmp_path / "rpo.jsonl", RPO), write_jsonl(tmp_path / "full.jsonl", full)
    with pytest.raises(ComparisonError, match="validate on different sets.*aime"):
        _compare(*paths)


def test_compare_refuses_runs_whose_steps_do_not_overlap(tmp_path):
    later = {step + 10: data for step, data in FULL.items() if step > 0}
    paths = write_jsonl(tmp_path / "rpo.jsonl", RPO), write_jsonl(tmp_path / "full.jsonl", later)
    with pytest.raises(ComparisonError, match=r"share no training step: .*rpo.jsonl trains steps 1-4; .* 11-14"):
        _compare(*paths)


@pytest.mark.parametrize(("argv", "message"), [
    (["rpo=/no/such.jsonl", "full=/no/such2.jsonl"], "no metrics file at /no/such.jsonl"),
    (["/no/such/dir", "x.jsonl"], "/no/such/dir: expected a verl file-logger JSONL"),
    (["=a.jsonl", "b.jsonl"], "expected LABEL=RUN"),
])
def test_compare_cli_exits_2_with_a_message_on_bad_input(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_compare_cli_groups_runs_by_label_in_the_order_labels_first_appear():
    assert cli.parse_runs(["rpo=a/metrics.jsonl", "rpo=b.jsonl", "c/metrics.jsonl", "ent/proj/run1"]) == {
        "rpo": ["a/metrics.jsonl", "b.jsonl"], "c": ["c/metrics.jsonl"], "run1": ["ent/proj/run1"]}


def test_compare_from_step_leaves_the_first_steps_out_of_the_costs(logged_runs):
    result = _compare(logged_runs["rpo"] / "metrics.jsonl", logged_runs["full"] / "metrics.jsonl", from_step=3)
    assert result["steps"] == [3, 4]
    later = {by: sum(run[s]["timing_s/step"] for s in (3, 4)) for by, run in (("rpo", RPO), ("full", FULL))}
    assert result["costs"]["timing_s/step"]["ratio"]["rpo"] == pytest.approx(later["rpo"] / later["full"])
    assert result["training_time"]["values"]["rpo"] == [pytest.approx(later["rpo"])]
    with pytest.raises(ComparisonError, match="no training step from step 5 on"):
        _compare(logged_runs["rpo"] / "metrics.jsonl", logged_runs["full"] / "metrics.jsonl", from_step=5)


def test_compare_command_lines_run_as_documented():
    repo = Path(__file__).resolve().parents[2]
    for command in ([sys.executable, "-m", "verl_ext.compare", "--help"],
                    [sys.executable, str(repo / "scripts" / "compare_runs.py"), "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=repo)
        assert result.returncode == 0, result.stderr
        assert "[LABEL=]RUN" in result.stdout and "--from-step" in result.stdout


def test_compare_wandb_path_without_a_login_is_a_clear_error(monkeypatch, tmp_path):
    """Without an API key wandb's public API refuses (its UsageError); the tool names the run and why, no traceback.
    The wandb-server read itself is untested here (no network; wandb offers no local fake of its public API)."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))
    with pytest.raises(RunSourceError, match=r"ent/proj/abc123: no such file or directory here, and wandb could not"):
        read_run("ent/proj/abc123")
