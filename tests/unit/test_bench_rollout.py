"""scripts/bench_rollout.py's pure parts: the step plan, pairing, ratio statistics, the JSON summary and the CLI.

The benchmark run itself (Ray, vLLM, the trainer) is a script, not a test; nothing here imports verl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest



@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_rollout")


def _line(step, rpo, warmup, tokens, gen_s, step_s, **extra):
    data = {
        "training/global_step": step, "bench/rpo": int(rpo), "bench/warmup": int(warmup),
        "rpo/generated_tokens": tokens, "timing_s/gen": gen_s, "timing_s/step": step_s,
        "bench/engine_call_s": gen_s - 0.1, **extra,
    }
    return {"step": step, "data": data}


def _run_lines(bench, warmup=1, pairs=3):
    """File-logger lines of a run that followed the plan: RPO costs 10% of the tokens and 15..25% of the time."""
    lines = []
    for step in range(1, bench.total_steps(warmup, pairs) + 1):
        phase, rpo = bench.step_plan(step, warmup)
        counted = step - warmup
        if phase == "warmup":
            lines.append(_line(step, True, True, 9000, 40.0, 60.0))
        elif rpo:
            lines.append(_line(step, True, False, 800 + counted, 4.0 + counted, 20.0))
        else:
            lines.append(_line(step, False, False, 8000, 40.0, 50.0))
    return lines


def test_step_plan_warms_up_then_alternates_rpo_and_full(bench):
    plan = [bench.step_plan(step, 2) for step in range(1, bench.total_steps(2, 3) + 1)]
    assert plan == [
        ("warmup", True), ("warmup", True),
        ("counted", True), ("counted", False), ("counted", True), ("counted", False), ("counted", True),
        ("counted", False),
    ]
    assert bench.total_steps(1, 3) == 7
    with pytest.raises(ValueError):
        bench.step_plan(0, 1)


def test_step_records_keep_mode_phase_and_metrics(bench):
    lines = [{"step": 0, "data": {"val-core/acc": 0.1}}, *_run_lines(bench, pairs=1)]
    lines.append({"step": 2, "data": {"training/global_step": 2}})  # no bench/rpo: not a benchmark step record
    records = bench.step_records(lines)
    assert [(r["step"], r["phase"], r["mode"]) for r in records] == [
        (1, "warmup", "rpo"), (2, "counted", "rpo"), (3, "counted", "full")
    ]
    assert records[1]["generated_tokens"] == 801 and records[1]["rollout_s"] == 5.0 and records[1]["step_s"] == 20.0
    assert records[1]["slowest_request_s"] is None  # not logged in this record


def test_pairs_are_rpo_then_full_in_step_order(bench):
    records = bench.step_records(_run_lines(bench, warmup=1, pairs=3))
    pairs = bench.pair_steps(records)
    assert [(rpo["step"], full["step"]) for rpo, full in pairs] == [(2, 3), (4, 5), (6, 7)]
    assert all(rpo["mode"] == "rpo" and full["mode"] == "full" for rpo, full in pairs)


def test_trailing_unpaired_step_is_dropped_and_same_mode_pair_raises(bench):
    records = bench.step_records(_run_lines(bench, pairs=2))
    assert len(bench.pair_steps(records[:-1])) == 1
    broken = [dict(r) for r in records]
    broken[2]["mode"] = "rpo"
    with pytest.raises(ValueError, match="not an A/B pair"):
        bench.pair_steps(broken)


def test_ratio_stats(bench):
    assert bench.ratio_stats([0.3, 0.1, 0.2]) == {"min": 0.1, "median": 0.2, "max": 0.3, "n": 3}
    assert bench.ratio_stats([0.1, 0.2, None, 0.4, 0.3])["median"] == pytest.approx(0.25)
    assert bench.ratio_stats([None]) == {"min": None, "median": None, "max": None, "n": 0}
    assert bench.ratio(1.0, 0.0) is None and bench.ratio(None, 2.0) is None and bench.ratio(1.0, 4.0) == 0.25


def test_summary_json_keys_and_medians(bench, tmp_path):
    records = bench.step_records(_run_lines(bench, warmup=1, pairs=3))
    summary = bench.summarize(records, {"response_length": 2048}, {"cpu_model": "x", "cpu_count": 2}, wall_s=12.0)
    # Pairs: (801, 5.0 s), (803, 7.0 s), (805, 9.0 s) against (8000, 40 s); step 20 s against 50 s.
    assert summary["pairs"] == 3
    assert summary["generated_token_ratio"] == pytest.approx(803 / 8000)
    assert summary["rollout_time_ratio"] == pytest.approx(7.0 / 40.0)
    assert summary["step_time_ratio"] == pytest.approx(0.4)
    stats = summary["ratio_stats"]["rollout_time_ratio"]
    assert (stats["min"], stats["max"]) == (pytest.approx(5.0 / 40.0), pytest.approx(9.0 / 40.0))
    assert [p["rpo_step"] for p in summary["pair_ratios"]] == [2, 4, 6]
    assert len(summary["steps"]) == 7 and summary["settings"] == {"response_length": 2048}
    assert summary["machine"]["cpu_count"] == 2
    breakdown = summary["time_breakdown"]
    assert breakdown["full"]["rollout_s"] == pytest.approx(40.0)
    assert breakdown["full"]["driver_side_s"] == pytest.approx(0.1)

    out = tmp_path / "bench.json"
    out.write_text(json.dumps(summary))  # plain JSON: no NaN, numpy or tuples
    loaded = json.loads(out.read_text())
    for key in ("generated_token_ratio", "rollout_time_ratio", "pairs", "ratio_stats", "steps", "settings", "machine"):
        assert key in loaded

    table = bench.markdown_table(summary)
    assert "| generated_token_ratio | 0.100 | 0.100 | 0.101 |" in table
    assert table.count("| counted | rpo |") == 3 and table.count("| counted | full |") == 3


def test_summary_without_pairs(bench):
    records = bench.step_records(_run_lines(bench, pairs=1))[:2]
    summary = bench.summarize(records, {}, {})
    assert summary["pairs"] == 0 and summary["generated_token_ratio"] is None
    assert "pairs counted: 0" in bench.markdown_table(summary)


def test_cli_defaults_and_acceptance_interface(bench, tmp_path):
    args = bench.parse_args(["--response-length", "2048", "--suffix-budget", "256", "--json", "OUT.json"])
    assert (args.response_length, args.suffix_budget, args.device, args.answers) == (2048, 256, "cpu", "budget")
    assert Path(args.json_path).is_absolute() and args.json_path.endswith("OUT.json")
    defaults = bench.parse_args([])
    assert (defaults.response_length, defaults.suffix_budget, defaults.pairs, defaults.warmup_steps) == (1024, 128, 3, 1)
    args = bench.parse_args(["--response-length", "4096", "--pairs", "2", "--group-size", "8", "trainer.seed=3"])
    assert args.overrides == ["trainer.seed=3"]
    overrides = bench.recipe_overrides(args, "/m", "/d.parquet", tmp_path)
    assert "rpo.truncation.max_new_tokens=128" in overrides and "actor_rollout_ref.rollout.n=8" in overrides
    assert "data.max_response_length=4096" in overrides and "trainer.total_training_steps=5" in overrides
    assert f"actor_rollout_ref.rollout.max_model_len={args.max_prompt_length + 4096}" in overrides
    assert "actor_rollout_ref.rollout.enable_prefix_caching=true" in overrides
    assert "actor_rollout_ref.rollout.ignore_eos=true" in overrides
    assert overrides[-1] == "trainer.seed=3"  # user overrides win
    for bad in (["--suffix-budget", "4096"], ["--pairs", "0"], ["--warmup-steps", "0"], ["not-an-override"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def test_tiny_context_covers_the_budget(bench):
    assert bench.tiny_max_positions(2048 + 64) == 8192
    assert bench.tiny_max_positions(8192 + 64) == 9216


def test_the_bench_trainer_overrides_keep_the_recipe_trainers_signatures(bench):
    """The benchmark subclasses RayRPOTrainer; a changed hook signature there must fail here, not in a 6-minute run."""
    import inspect

    from recipe.rpo.rpo_ray_trainer import RayRPOTrainer

    def parameters(function):
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    trainer_cls = bench._bench_classes().trainer_cls
    for name in ("_collect_batch", "_update_policy"):
        assert parameters(getattr(trainer_cls, name)) == parameters(getattr(RayRPOTrainer, name)), name
