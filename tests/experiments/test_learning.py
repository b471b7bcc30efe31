"""verl_ext.experiments.learning's pure parts: statistics, verdicts, the summary, the runs' overrides and the reuse
of finished runs (its accuracy curves: tests/compare/test_curves.py).

The experiment itself (SFT warm-up, fifteen RL runs) is a script, not a test; nothing here imports verl."""

from __future__ import annotations

import json

import pytest

from verl_ext.compare.curves import run_curve
from verl_ext.compare.file_logger import metrics_by_step
from verl_ext.experiments.learning import arms, cli, comparison, curves, report, runner

VAL_KEY = "val-core/tiny_arith/acc/mean@1"


def _lines(accs: dict[int, float], step_s: float, tokens: float, steps: int) -> list[dict]:
    """File-logger lines of a run: validation before training (step 0) and at the steps in ``accs``."""
    lines = [{"step": 0, "data": {VAL_KEY: accs[0], "val-aux/tiny_arith/score/mean@1": 9.0}}]
    for step in range(1, steps + 1):
        data = {"training/global_step": step, "timing_s/step": step_s, "rpo/generated_tokens": tokens}
        if step in accs:
            data[VAL_KEY] = accs[step]
        lines.append({"step": step, "data": data})
    return lines


def _curve(lines: list[dict]) -> list[dict]:
    return run_curve(metrics_by_step(lines))


def test_compare_seed_when_the_arm_reaches_the_baseline_early():
    full = _curve(_lines({0: 0.3, 2: 0.5, 4: 0.6}, 10.0, 1000.0, 4))
    rpo = _curve(_lines({0: 0.3, 2: 0.6, 4: 0.7}, 4.0, 250.0, 4))
    verdict = comparison.compare_seed(full, rpo)
    assert verdict["final_acc_diff"] == pytest.approx(0.1)
    assert verdict["wall_ratio"] == pytest.approx(0.4)
    assert verdict["token_ratio"] == pytest.approx(0.25)
    assert verdict["reached_full_final"] is True
    assert verdict["reached_at_step"] == 2
    assert verdict["reached_at_wall_frac"] == pytest.approx(8.0 / 40.0)


def test_compare_seed_when_the_arm_never_reaches_the_baseline():
    full = _curve(_lines({0: 0.3, 2: 0.9}, 10.0, 1000.0, 2))
    rpo = _curve(_lines({0: 0.3, 2: 0.8}, 4.0, 250.0, 2))
    verdict = comparison.compare_seed(full, rpo)
    assert verdict["reached_full_final"] is False
    assert verdict["reached_at_step"] is None and verdict["reached_at_wall_frac"] is None


def test_compare_seed_does_not_count_the_shared_start():
    """A baseline that ends below the start is not "reached" by the arm's untrained start point."""
    full = _curve(_lines({0: 0.5, 2: 0.4}, 10.0, 1000.0, 2))
    rpo = _curve(_lines({0: 0.5, 2: 0.3}, 4.0, 250.0, 2))
    assert comparison.compare_seed(full, rpo)["reached_full_final"] is False


def test_pooled_model_shares_one_variance_over_all_arms():
    finals = {"full": [0.5, 0.6, 0.7, 0.6, 0.6], "rpo": [0.4, 0.5, 0.6], "other": [0.3, 0.3, 0.3]}
    model = comparison.pooled_model(finals)
    # Squares 0.02 + 0.02 + 0 over 11 runs - 3 arms = 8 degrees of freedom; t(0.975, 8) = 2.306004.
    assert model["dof"] == 8 and model["runs"] == 11
    assert model["pooled_std"] == pytest.approx((0.04 / 8) ** 0.5)
    diff = comparison.difference_interval(model, finals["rpo"], finals["full"])
    half = 2.306004 * (0.04 / 8) ** 0.5 * (1 / 3 + 1 / 5) ** 0.5
    assert diff["mean"] == pytest.approx(-0.1)
    assert (diff["low"], diff["high"]) == (pytest.approx(-0.1 - half, abs=1e-6), pytest.approx(-0.1 + half, abs=1e-6))
    assert (diff["n"], diff["n_baseline"]) == (3, 5)
    low, high = comparison.mean_interval(model, finals["other"])
    assert (low + high) / 2 == pytest.approx(0.3) and high - 0.3 == pytest.approx(2.306004 * (0.04 / 8 / 3) ** 0.5)
    # One run per arm leaves no degrees of freedom: no interval rather than a made-up one.
    single = comparison.pooled_model({"full": [0.5], "rpo": [0.4]})
    assert single["pooled_std"] is None and comparison.difference_interval(single, [0.4], [0.5])["low"] is None
    assert comparison.mean_interval(single, [0.4]) is None


def test_run_diagnostics_average_the_training_steps_only():
    lines = _lines({0: 0.1, 2: 0.2}, 1.0, 5.0, 2)
    lines[1]["data"]["rpo/no_signal_group_frac"] = 0.25
    lines[2]["data"]["rpo/no_signal_group_frac"] = 0.75
    lines[0]["data"]["rpo/no_signal_group_frac"] = 9.0  # not a training step
    assert curves.run_diagnostics(lines) == {"rpo/no_signal_group_frac": 0.5}


def test_diagnostic_steps_keep_every_training_step_in_order():
    lines = _lines({0: 0.1, 3: 0.2}, 1.0, 5.0, 3)
    for step, value in ((3, 0.5), (1, 0.25)):
        lines[step]["data"]["rpo/cached_acc_frac"] = value
    lines[0]["data"]["rpo/cached_acc_frac"] = 9.0  # not a training step
    assert curves.diagnostic_steps(lines) == {"rpo/cached_acc_frac": [[1, 0.25], [3, 0.5]]}


def _runs():
    return {
        "full": {s: _curve(_lines({0: 0.3, 2: 0.5 + 0.1 * s}, 10.0, 1000.0, 2)) for s in (0, 1, 2)},
        "rpo": {s: _curve(_lines({0: 0.3, 2: 0.6}, 5.0, 300.0, 2)) for s in (0, 1, 2)},
        "rpo_null": {s: _curve(_lines({0: 0.3, 2: 0.5 + 0.1 * s}, 11.0, 1000.0, 2)) for s in (0, 1, 2)},
    }


def test_welch_interval_keeps_each_arms_own_variance():
    # Variances 0.01 (n=3) and 0.00325 (n=5): se^2 = 0.01/3 + 0.00325/5; Welch-Satterthwaite dof 2.80.
    values, baseline = [0.5, 0.6, 0.7], [0.6, 0.65, 0.7, 0.6, 0.55]
    interval = comparison.welch_interval(values, baseline)
    a, b = 0.01 / 3, 0.00325 / 5
    dof = (a + b) ** 2 / (a**2 / 2 + b**2 / 4)
    assert interval["dof"] == pytest.approx(dof)
    from scipy import stats
    half = stats.t.ppf(0.975, dof) * (a + b) ** 0.5
    assert interval["mean"] == pytest.approx(-0.02)
    assert (interval["low"], interval["high"]) == (pytest.approx(-0.02 - half), pytest.approx(-0.02 + half))
    # An unstable arm does not borrow the stable arms' small spread: its interval is wider than the pooled one.
    finals = {"full": [0.77, 0.76, 0.78, 0.77, 0.76], "rpo": [0.35, 0.64, 0.55, 0.60, 0.45],
              "adaptive": [0.72, 0.71, 0.73, 0.70, 0.72]}
    pooled = comparison.difference_interval(comparison.pooled_model(finals), finals["rpo"], finals["full"])
    welch = comparison.welch_interval(finals["rpo"], finals["full"])
    assert welch["high"] - welch["low"] > pooled["high"] - pooled["low"]
    assert comparison.welch_interval([0.5], [0.4, 0.6])["low"] is None
    assert comparison.welch_interval([0.5, 0.5], [0.6, 0.6])["low"] is None


def test_summarize_compares_every_arm_with_the_full_path_under_the_pooled_model():
    summary = comparison.summarize(_runs(), {"rpo": {s: {"rpo/cached_acc_frac": 0.5 + 0.1 * s} for s in (0, 1, 2)}})
    assert summary["seeds"] == {"full": [0, 1, 2], "rpo": [0, 1, 2], "rpo_null": [0, 1, 2]}
    rpo = summary["comparisons"]["rpo"]
    assert rpo["reached_full_final"] == 2  # baseline finals 0.5, 0.6, 0.7 against RPO's 0.6
    assert rpo["wall_share"] == pytest.approx(0.5) and rpo["token_share"] == pytest.approx(0.3)
    # Squares 0.02 (full) + 0 (rpo) + 0.02 (rpo_null) over 9 - 3 dof; t(0.975, 6) = 2.446912.
    half = 2.446912 * (0.04 / 6) ** 0.5 * (2 / 3) ** 0.5
    assert rpo["final_acc_diff"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert rpo["final_acc_diff"]["high"] == pytest.approx(half, abs=1e-6)
    assert rpo["non_inferior"] is False and rpo["meets_goal"] is False  # -0.163 < -0.05
    assert rpo["reached_at_wall_frac"]["mean"] == pytest.approx(0.5)
    assert summary["comparisons"]["rpo_null"]["final_acc_diff"]["mean"] == pytest.approx(0.0)
    assert [point["arm"] for point in summary["frontier"]] == ["rpo", "full", "rpo_null"]
    arms = summary["arms"]
    assert arms["full"]["final_acc"]["mean"] == pytest.approx(0.6)
    assert arms["full"]["gain"]["mean"] == pytest.approx(0.3)
    assert arms["rpo"]["diagnostics"]["rpo/cached_acc_frac"]["mean"] == pytest.approx(0.6)
    assert "full" not in summary["comparisons"]


def test_summarize_needs_the_full_path_and_takes_arms_on_their_own_seeds():
    runs = _runs()
    with pytest.raises(ValueError, match="no full run"):
        comparison.summarize({"rpo": runs["rpo"]})
    # The headline arms on five seeds, another arm on the first three: every run counts.
    runs["full"].update({s: _curve(_lines({0: 0.3, 2: 0.6}, 10.0, 1000.0, 2)) for s in (3, 4)})
    runs["rpo"] = {s: _curve(_lines({0: 0.3, 2: 0.58 + 0.01 * s}, 5.0, 300.0, 2)) for s in range(5)}
    summary = comparison.summarize(runs)
    assert summary["seeds"]["full"] == [0, 1, 2, 3, 4] and summary["seeds"]["rpo_null"] == [0, 1, 2]
    assert summary["model"]["runs"] == 13 and summary["model"]["dof"] == 10
    rpo = summary["comparisons"]["rpo"]
    assert rpo["final_acc_diff"]["mean"] == pytest.approx(0.0) and rpo["final_acc_diff"]["n"] == 5
    # Pooled std 0.0640 (squares 0.02 + 0.001 + 0.02 over 10 dof): the lower end -0.090 < -0.05, not non-inferior.
    assert rpo["final_acc_diff"]["low"] == pytest.approx(-2.228139 * (0.041 / 10) ** 0.5 * 0.4 ** 0.5, abs=1e-6)
    assert rpo["non_inferior"] is False
    runs["rpo"] = {s: _curve(_lines({0: 0.3, 2: 0.6}, 5.0, 300.0, 2)) for s in range(5)}
    runs["full"] = {s: _curve(_lines({0: 0.3, 2: 0.6 + 0.01 * (s % 2)}, 10.0, 1000.0, 2)) for s in range(5)}
    del runs["rpo_null"]
    goal = comparison.summarize(runs)
    assert goal["comparisons"]["rpo"]["meets_goal"] is True and goal["goal"]["met_by"] == ["rpo"]


SETTINGS = {
    "steps": 2,
    "prompts_per_step": 8,
    "train_prompts": 32,
    "group_size": 4,
    "response_length": 96,
    "suffix_budget": 48,
    "truncation_mode": "tail",
    "actor_lr": 1e-4,
    "lr_schedule": "cosine",
    "kl_coef": 0.04,
    "val_prompts": 64,
    "temperature": 0.7,
    "reward": "acc",
    "val_samples": 4,
    "val_temperature": 0.7,
}


def test_markdown_summary_reports_every_arm_seed_and_interval():
    table = report.markdown_summary(comparison.summarize(_runs()), SETTINGS)
    assert ("| full-path GRPO | 3 | 0.300 ± 0.000 (min 0.300, max 0.300) | 0.600 ± 0.100 (min 0.500, max 0.700) "
            "| (baseline) |  | 1 | 1 |  |  |") in table
    assert "| RPO-GRPO (tail cut) | 3 |" in table
    assert "| +0.000 [-0.163, +0.163] | [-0.248, +0.248] | 0.30 | 0.50 | no, no | no |" in table
    assert "9 runs (6 degrees of freedom; pooled run-to-run std 0.082)" in table
    assert "Goal met by: no RPO setting" in table
    assert "| RPO-GRPO (tail cut) | 0.30 | 0.50 | 0.600 [0.485, 0.715] | -0.163 |" in table
    assert "| 2 | 0.700 | 0.600 | 0.700 |" in table
    assert "mean of 4 samples at T=0.7 (64 prompts)" in table
    assert "sqrt(0.25 / 256) = 0.0312 (4 samples x 64 prompts)" in table


def test_report_files_and_replot_from_the_saved_curves(tmp_path):
    runs = _runs()
    by_step = {"rpo/no_signal_group_frac": [[1, 0.5], [2, 0.25]], "rpo/cached_acc_frac": [[2, 0.75]]}
    details = {
        arm: {
            seed: {"curve": curve, "diagnostics": {}, "diagnostics_by_step": by_step, "process_s": 60.0}
            for seed, curve in runs[arm].items()
        }
        for arm in runs
    }
    settings = {**SETTINGS, "val_samples": 1, "val_temperature": 0.0, "warmup": {"reused": True}}
    text = report.write_report(tmp_path, details, settings, {"cpu_count": 2}, 600.0)
    for name in ("accuracy_vs_wallclock.png", "accuracy_vs_generated_tokens.png", "diagnostics.png", "frontier.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "summary.md").read_text() == text + "\n"
    assert "greedy val accuracy (64 prompts)" in text and "10.0 min on 2 cores" in text
    saved = json.loads((tmp_path / "curves.json").read_text())
    assert saved["summary"]["comparisons"]["rpo"]["reached_full_final"] == 2
    assert set(saved["runs"]) == {"full", "rpo", "rpo_null"} and saved["summary"]["arms"]["full"]["final_acc"]
    (tmp_path / "summary.md").unlink()
    assert report.replot(tmp_path) == text


def test_overrides_differ_between_arms_only_in_the_arms_own_overrides(tmp_path):
    args = cli.parse_args(["--work-dir", str(tmp_path), "trainer.foo=1"])
    assert args.arms == list(arms.DEFAULT_ARMS)
    full = runner.rl_overrides(args, "full", 7, tmp_path / "run", tmp_path / "warm")
    for arm in arms.ARMS:
        other = runner.rl_overrides(args, arm, 7, tmp_path / "run", tmp_path / "warm")
        assert set(other) - set(full) == {
            f"trainer.experiment_name={arm}_seed7",
            *(o.format(suffix_budget=32, response_length=224) for o in arms.ARMS[arm].overrides),
        } - set(full)
        assert other[-1] == "trainer.foo=1"
    assert "rpo.truncation.max_new_tokens=224" in runner.rl_overrides(args, "uniform_finish", 7, tmp_path, tmp_path)
    fixed = set(runner.rl_overrides(args, "full_fixed_norm", 7, tmp_path, tmp_path))
    assert {"actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm",
            "actor_rollout_ref.actor.loss_scale_factor=224", "rpo.enable=false"} <= fixed
    rpo_null = runner.rl_overrides(args, "rpo_null", 7, tmp_path / "run", tmp_path / "warm")
    assert {"rpo.enable=true", "rpo.cold_start=full_group", "rpo.cache.update=false"} <= set(rpo_null)
    assert "rpo.truncation.slack=32" in runner.rl_overrides(args, "rpo_slack", 7, tmp_path / "run", tmp_path / "warm")
    assert {"data.seed=7", "actor_rollout_ref.rollout.seed=7", "rpo.seed=7"} <= set(full)
    assert {
        "actor_rollout_ref.rollout.val_kwargs.n=8",
        "actor_rollout_ref.rollout.val_kwargs.do_sample=true",
        "++reward.custom_reward_function.reward_kwargs.format_weight=0.0",
    } <= set(full)


def test_the_full_path_always_runs_first(tmp_path):
    assert cli.parse_args(["--arms", "rpo_null"]).arms == ["full", "rpo_null"]


def test_headline_arms_run_on_every_seed_and_the_others_on_the_first_ones():
    args = cli.parse_args([])
    assert args.seeds == [0, 1, 2, 3, 4]
    assert {arm: cli.arm_seeds(args, arm) for arm in ("full", "rpo", "adaptive", "tail128")} == {
        "full": [0, 1, 2, 3, 4], "rpo": [0, 1, 2, 3, 4], "adaptive": [0, 1, 2, 3, 4], "tail128": [0, 1, 2]}
    subset = cli.parse_args(["--arms", "adaptive", "uniform_finish", "--seeds", "3", "4", "--other-arm-seeds", "1"])
    assert subset.arms == ["full", "adaptive", "uniform_finish"]
    assert cli.arm_seeds(subset, "adaptive") == [3, 4] and cli.arm_seeds(subset, "uniform_finish") == [3]


@pytest.mark.parametrize(
    "argv",
    [["--steps", "10", "--test-freq", "4"], ["--seeds", "1", "1"], ["--arms", "rpo", "rpo"], ["--arms", "bogus"],
     ["--other-arm-seeds", "0"]],
)
def test_cli_rejects_inconsistent_settings(argv):
    with pytest.raises(SystemExit):
        cli.parse_args(argv)


START = {"build": {"task": "chain"}, "warmup": {"steps": 600}}


def _finish(run_dir, overrides, steps=2):
    run_dir.mkdir(parents=True)
    lines = _lines({0: 0.2, steps: 0.4}, 1.0, 5.0, steps)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (run_dir / runner.RUN_RECORD).write_text(json.dumps({"overrides": overrides, "start": START, "process_s": 42.0}))


def test_a_finished_run_is_reused_only_with_the_same_overrides_and_start(tmp_path):
    overrides = ["trainer.total_training_steps=2", "rpo.enable=true"]
    _finish(tmp_path / "run", overrides)
    reused = runner.finished_run(tmp_path / "run", overrides, START, 2)
    assert reused["process_s"] == 42.0 and [p["acc"] for p in reused["curve"]] == [0.2, 0.4]
    assert runner.finished_run(tmp_path / "run", [*overrides, "data.seed=1"], START, 2) is None
    assert runner.finished_run(tmp_path / "elsewhere", overrides, START, 2) is None
    other_testbed = {**START, "build": {"task": "chain", "sft_slip_rate": 0.05}}
    assert runner.finished_run(tmp_path / "run", overrides, other_testbed, 2) is None


def test_a_recorded_run_that_stopped_early_is_an_error(tmp_path):
    overrides = ["trainer.total_training_steps=4"]
    _finish(tmp_path / "run", overrides, steps=2)
    with pytest.raises(RuntimeError, match="last validation at step 2, expected 4"):
        runner.finished_run(tmp_path / "run", overrides, START, 4)


def test_the_start_validations_of_all_runs_measure_the_validation_noise():
    runs = _runs()
    runs["rpo"][1] = _curve(_lines({0: 0.5, 2: 0.6}, 5.0, 300.0, 2))
    summary = comparison.summarize(runs)
    assert summary["start_validations"]["max"] == pytest.approx(0.5)
    assert summary["start_validations"]["mean"] == pytest.approx((8 * 0.3 + 0.5) / 9)
    assert "validated once by each of the 9 runs, scored 0.322" in report.markdown_summary(summary, SETTINGS)


def test_the_instrument_checks_report_power_and_the_null_arm():
    runs = _runs()
    runs["full"] = {s: _curve(_lines({0: 0.3, 2: 0.4 + 0.2 * s}, 10.0, 1000.0, 2)) for s in (0, 1, 2)}
    runs["rpo_null"] = runs["full"]
    checks = comparison.summarize(runs)["checks"]
    assert checks["power"]["holds"] is False  # gain 0.3 ± 0.2: the std is not under a third of the gain
    assert checks["null"] == {"final_acc_diff": pytest.approx(0.0), "tolerance": pytest.approx(0.4), "holds": True}
    runs["full"] = {s: _curve(_lines({0: 0.3, 2: 0.5 + 0.01 * s}, 10.0, 1000.0, 2)) for s in (0, 1, 2)}
    summary = comparison.summarize(runs)
    assert summary["checks"]["power"]["holds"] is True
    assert summary["checks"]["null"]["tolerance"] == pytest.approx(0.03)
    assert summary["checks"]["null"]["holds"] is False  # rpo_null ends 0.09 +- 0.09 above
    text = report.markdown_summary(summary, SETTINGS)
    assert "Power: the full path gained +0.210 ± 0.010" in text and ": holds." in text
    assert "Null: RPO path without reuse - full = +0.090 (must be within 0.030): DOES NOT HOLD." in text
    assert set(comparison.summarize({"full": runs["full"]})["checks"]) == {"power"}


def test_runs_start_in_the_checkout_and_write_its_evidence_folder():
    """The trainer runs from the checkout the experiment was started from (its recipe, its verl_ext), and the
    results land in its committed evidence folder."""
    assert (runner.REPO_ROOT / "recipe" / "rpo" / "main_rpo.py").is_file()
    assert cli.DEFAULT_OUT == runner.REPO_ROOT / "docs" / "evidence" / "learning" and cli.DEFAULT_OUT.is_dir()
