#!/usr/bin/env python
"""Does RPO learn? RPO arms against full-path GRPO from the same warmed-up model, on CPU, paired by seed.

    python scripts/learning_experiment.py [--arms full rpo rpo_null ...] [--seeds 0 1 2]
    # writes docs/evidence/learning/

1. Start point (shared by every run): the tiny Qwen2 model and the addition task of ``verl_ext.tiny``, then a
   supervised warm-up with verl's SFT trainer (torchrun, FSDP2 engine) so that the model solves part of the problems.
   Both are idempotent: a second call reuses them.
2. For each seed, one RL run of the recipe's trainer per arm (``python -m recipe.rpo.main_rpo --config-name
   rpo_cpu_tiny``, Ray + FSDP actor + vLLM CPU rollout server), identical but for the arm's overrides (:data:`ARMS`:
   the full path, the paper's RPO, ``rpo_null`` and RPO variants). The seed sets the data order, the rollout engine's
   sampling seed and RPO's truncation RNG; the arms of a seed share all three. Arms run one after the other within a
   seed, so slow drift of the machine's load hits all of them.
3. From verl's file logger: validation accuracy (``val-core/<data_source>/acc/mean@<n>``: all val prompts,
   ``--val-samples`` samples each at ``--val-temperature``, the paper's pass@1-averaged protocol) before
   training and every ``--test-freq`` steps, against the step, the cumulative training wall-clock (sum of
   ``timing_s/step``: rollout + update; validation and process start-up excluded, they are the same for both arms)
   and the cumulative generated tokens (``rpo/generated_tokens``, which both arms log).

Each arm is compared with the full path, paired by seed: the final-accuracy difference with its 95% t-interval, the
wall-clock and token shares; per-step diagnostics (:data:`DIAGNOSTIC_METRICS`) explain the differences.
Writes ``curves.json`` (every run's curve and diagnostics, the per-arm mean and spread, the comparisons, the settings
and the machine),
``accuracy_vs_wallclock.png``, ``accuracy_vs_generated_tokens.png`` and ``summary.md`` into ``--out``.

The training set is the first ``--train-prompts`` (32) prompts, so the 12 steps of 8 prompts are 3 epochs: RPO's
cache is seeded in the first epoch (one full answer per prompt) and pays off from the second, as in the paper's
multi-epoch runs. With a fresh prompt every step RPO would seed every prompt and never reuse an entry.

The RPO suffix budget (``--suffix-budget``, ``rpo.truncation.max_new_tokens``) defaults to 48 tokens: the worked
answers here are 50-75 tokens, and a budget of a few tokens would only ever regenerate the boxed copy of the
result, never a column sum. The paper's 300 of ~4k tokens is a far smaller share; see the README's Evidence section.

The pure parts (reading the metrics, curves, statistics, the summary) import neither verl nor matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Optional, Sequence

from verl_ext.run_metrics import metrics_by_step, val_accuracy

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "docs" / "evidence" / "learning"
DEFAULT_WORK = REPO_ROOT / ".cache" / "learning"



class Arm(NamedTuple):
    """One arm of the experiment: how it differs from the shared settings (hydra overrides of the recipe config)."""

    label: str
    color: str
    overrides: tuple[str, ...]


BASELINE = "full"
# Every arm runs from the same warm start, seeds, data order and budget; only these overrides differ
# (``{suffix_budget}`` is ``--suffix-budget``). The paper's
# RPO is ``rpo``; ``rpo_null`` sends every row through the RPO path as a fresh full-length rollout (G full answers per
# prompt, the cache never written), so it must match ``full`` within noise: the plumbing alone changes nothing.
ARMS: dict[str, Arm] = {
    BASELINE: Arm("full-path GRPO", "tab:blue", ("rpo.enable=false",)),
    "rpo": Arm("RPO-GRPO (tail cut)", "tab:orange", ("rpo.enable=true",)),
    "rpo_null": Arm("RPO path, no reuse", "tab:gray",
                    ("rpo.enable=true", "rpo.cold_start=full_group", "rpo.cache.update=false")),
    "rpo_uniform": Arm("RPO-GRPO, uniform cut", "tab:green", ("rpo.enable=true", "rpo.truncation.mode=uniform")),
    "rpo_correct_only": Arm("RPO-GRPO, correct-only cache", "tab:purple",
                            ("rpo.enable=true", "rpo.cache.correct_only=true")),
    "rpo_prefix_loss": Arm("RPO-GRPO, loss on the prefix", "tab:brown", ("rpo.enable=true", "rpo.loss_on_prefix=true")),
    "rpo_slack": Arm("RPO-GRPO, suffix slack", "tab:red", ("rpo.enable=true", "rpo.truncation.slack={suffix_budget}")),
    "rpo_verified": Arm("RPO-GRPO, verified cut", "tab:olive",
                        ("rpo.enable=true", "rpo.truncation.mode=verified", "rpo.cache.store_logprobs=true",
                         "actor_rollout_ref.rollout.calculate_log_probs=true")),
}
DEFAULT_ARMS = ("full", "rpo", "rpo_null", "rpo_slack", "rpo_verified")
# Per-step metrics that explain a difference between arms (means over a run's training steps).
DIAGNOSTIC_METRICS = ("rpo/no_signal_group_frac", "rpo/cached_acc_frac", "rpo/cached_len_mean",
                      "rpo/cache_staleness_mean", "response_length/mean", "rpo/suffix_len_mean",
                      "rpo/verify_accept_rate")
STEP_TIME_METRIC = "timing_s/step"
TOKENS_METRIC = "rpo/generated_tokens"
# ``--reward``: accuracy alone, or the paper's accuracy + format + cosine length (verl_ext.rewards, 1:1:1).
REWARD_OVERRIDES = {
    "acc": ["++reward.custom_reward_function.reward_kwargs.format_weight=0.0",
            "++reward.custom_reward_function.reward_kwargs.cosine_weight=0.0"],
    "paper": [],
}


# ---------------------------------------------------------------------------------------------------- pure helpers


def run_curve(metric_lines: Iterable[dict]) -> list[dict]:
    """One point per validated step, from verl's file-logger lines (``{"step": n, "data": {...}}``).

    A point is ``{"step", "wall_s", "generated_tokens", "acc"}``, where ``wall_s`` and ``generated_tokens`` add up
    ``timing_s/step`` and ``rpo/generated_tokens`` over the training steps up to and including ``step`` (0 for the
    validation before training). Raises ValueError on a training step that lacks either metric, or on a run with no
    validation at all: both mean the run is not the one this experiment configures."""
    by_step = metrics_by_step(metric_lines)
    points, wall_s, tokens = [], 0.0, 0.0
    for step in sorted(by_step):
        data = by_step[step]
        if step > 0:
            missing = [m for m in (STEP_TIME_METRIC, TOKENS_METRIC) if m not in data]
            if missing:
                raise ValueError(f"training step {step} logged no {', '.join(missing)}")
            wall_s += float(data[STEP_TIME_METRIC])
            tokens += float(data[TOKENS_METRIC])
        acc = val_accuracy(data)
        if acc is not None:
            points.append({"step": step, "wall_s": wall_s, "generated_tokens": tokens, "acc": acc})
    if not points:
        raise ValueError("no validation accuracy in the metrics (val-core/<source>/acc/mean@<n>)")
    return points


def spread(values: Sequence[float]) -> dict[str, float]:
    """mean, sample standard deviation (0 for one value), min and max."""
    values = [float(v) for v in values]
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def mean_curve(curves: Sequence[Sequence[dict]]) -> list[dict]:
    """Per validated step common to all ``curves`` (one per seed): the spread of accuracy, wall-clock and tokens."""
    if not curves:
        raise ValueError("no curves to average")
    common = set.intersection(*({p["step"] for p in curve} for curve in curves))
    result = []
    for step in sorted(common):
        at_step = [next(p for p in curve if p["step"] == step) for curve in curves]
        result.append({"step": step, **{
            field: spread([p[field] for p in at_step]) for field in ("acc", "wall_s", "generated_tokens")
        }})
    return result


def share(part: float, whole: float) -> Optional[float]:
    """``part / whole``, None when ``whole`` is not positive (a run that trained for no time or generated nothing)."""
    return part / whole if whole > 0 else None


def first_reaching(curve: Sequence[dict], target: float) -> Optional[dict]:
    """The first point of ``curve`` whose accuracy is at least ``target`` (None when it never gets there)."""
    return next((p for p in curve if p["acc"] >= target - 1e-9), None)


def compare_seed(full: Sequence[dict], arm: Sequence[dict]) -> dict[str, Any]:
    """One seed's verdict for an arm against the full path: final accuracies and their difference, the arm's
    training wall-clock and tokens as a share of the baseline's, and whether (and at what share of the baseline's
    wall-clock) the arm, after at least one training step, first reached the baseline's final accuracy."""
    full_end, arm_end = full[-1], arm[-1]
    # Only trained points count: the shared start "reaches" a baseline that got worse, which says nothing.
    reached = first_reaching([p for p in arm if p["step"] > 0], full_end["acc"])
    return {
        "initial_acc": full[0]["acc"],
        "full_final_acc": full_end["acc"],
        "arm_final_acc": arm_end["acc"],
        "final_acc_diff": arm_end["acc"] - full_end["acc"],
        "full_wall_s": full_end["wall_s"],
        "arm_wall_s": arm_end["wall_s"],
        "wall_ratio": share(arm_end["wall_s"], full_end["wall_s"]),
        "token_ratio": share(arm_end["generated_tokens"], full_end["generated_tokens"]),
        "reached_full_final": reached is not None,
        "reached_at_step": None if reached is None else reached["step"],
        "reached_at_wall_frac": None if reached is None else share(reached["wall_s"], full_end["wall_s"]),
    }


def paired_interval(differences: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean of per-seed paired differences with its Student-t confidence interval (None with a single seed)."""
    from scipy import stats

    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return {"mean": mean, "std": 0.0, "n": n, "low": None, "high": None, "confidence": confidence}
    std = statistics.stdev(differences)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / n**0.5
    return {"mean": mean, "std": std, "n": n, "low": mean - half, "high": mean + half, "confidence": confidence}


def run_diagnostics(metric_lines: Iterable[dict]) -> dict[str, float]:
    """Means over a run's training steps of the :data:`DIAGNOSTIC_METRICS` it logged."""
    steps = [data for step, data in metrics_by_step(metric_lines).items()
             if step > 0 and "training/global_step" in data]
    return {metric: statistics.fmean(float(d[metric]) for d in steps if metric in d)
            for metric in DIAGNOSTIC_METRICS if any(metric in d for d in steps)}


def summarize(runs: dict[str, dict[int, list[dict]]],
              diagnostics: Optional[dict[str, dict[int, dict[str, float]]]] = None) -> dict[str, Any]:
    """``runs[arm][seed]`` = curve, for the full path and any other arms. Per arm: the mean curve, the spread over
    seeds of start, final and best accuracy, wall-clock, tokens and diagnostics; per other arm, paired by seed with
    the full path: the difference of final accuracy with its 95% interval, the wall-clock and token shares, and in
    how many seeds the arm reached the baseline's final accuracy. Only seeds every arm ran count."""
    if not runs.get(BASELINE):
        raise ValueError(f"no {BASELINE} run: every arm is compared with the full path")
    names = [arm for arm in ARMS if runs.get(arm)]
    seeds = sorted(set.intersection(*(set(runs[arm]) for arm in names)))
    if not seeds:
        raise ValueError(f"no seed has a run of every arm ({', '.join(names)})")
    diagnostics = diagnostics or {}

    def over_seeds(values: Sequence[Optional[float]]) -> Optional[dict[str, float]]:
        defined = [v for v in values if v is not None]
        return spread(defined) if defined else None

    arms = {}
    for arm in names:
        curves = [runs[arm][seed] for seed in seeds]
        per_seed_diag = [diagnostics.get(arm, {}).get(seed, {}) for seed in seeds]
        arms[arm] = {
            "mean_curve": mean_curve(curves),
            "per_seed": {seed: {"initial_acc": c[0]["acc"], "final_acc": c[-1]["acc"]}
                         for seed, c in zip(seeds, curves)},
            "initial_acc": spread([c[0]["acc"] for c in curves]),
            "final_acc": spread([c[-1]["acc"] for c in curves]),
            "best_acc": spread([max(p["acc"] for p in c) for c in curves]),
            "gain": spread([c[-1]["acc"] - c[0]["acc"] for c in curves]),
            "train_wall_s": spread([c[-1]["wall_s"] for c in curves]),
            "generated_tokens": spread([c[-1]["generated_tokens"] for c in curves]),
            "diagnostics": {metric: over_seeds([d.get(metric) for d in per_seed_diag]) for metric in DIAGNOSTIC_METRICS
                            if any(metric in d for d in per_seed_diag)},
        }
    comparisons = {}
    for arm in names:
        if arm == BASELINE:
            continue
        per_seed = {seed: compare_seed(runs[BASELINE][seed], runs[arm][seed]) for seed in seeds}
        comparisons[arm] = {
            "per_seed": per_seed,
            "final_acc_diff": paired_interval([per_seed[s]["final_acc_diff"] for s in seeds]),
            "wall_ratio": over_seeds([per_seed[s]["wall_ratio"] for s in seeds]),
            "token_ratio": over_seeds([per_seed[s]["token_ratio"] for s in seeds]),
            "reached_full_final": sum(per_seed[s]["reached_full_final"] for s in seeds),
            "reached_at_wall_frac": over_seeds([per_seed[s]["reached_at_wall_frac"] for s in seeds]),
        }
    return {"seeds": seeds, "arms": arms, "comparisons": comparisons}


def val_metric_label(settings: dict[str, Any]) -> str:
    """What the accuracy axis measures, e.g. "val acc, mean of 4 samples at T=0.7 over 64 prompts"."""
    if settings["val_temperature"] <= 0:
        return f"greedy val accuracy ({settings['val_prompts']} prompts)"
    return (f"val accuracy, mean of {settings['val_samples']} samples at T={settings['val_temperature']} "
            f"({settings['val_prompts']} prompts)")


def _pm(s: dict[str, float], digits: int = 3) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} (min {s['min']:.{digits}f}, max {s['max']:.{digits}f})"


def _interval(d: dict[str, Any]) -> str:
    if d["low"] is None:
        return f"{d['mean']:+.3f} (one seed)"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _share(s: Optional[dict[str, float]]) -> str:
    return "n/a" if s is None else f"{s['mean']:.2f} ± {s['std']:.2f}"


def markdown_summary(summary: dict[str, Any], settings: dict[str, Any]) -> str:
    """The experiment's tables: per arm (mean ± sample std over seeds), the paired comparison with the full path
    (95% t-interval of the final-accuracy difference), the diagnostics, and the per-seed finals."""
    seeds = summary["seeds"]
    names = list(summary["arms"])
    lines = [
        f"{len(names)} arms, {len(seeds)} seeds ({', '.join(map(str, seeds))}), "
        f"{settings['steps']} steps of {settings['prompts_per_step']} prompts x G={settings['group_size']} "
        f"over {settings['train_prompts']} training prompts, "
        f"response budget {settings['response_length']}, RPO suffix budget {settings['suffix_budget']} "
        f"({settings['truncation_mode']}), actor lr {settings['actor_lr']}, rollout temperature "
        f"{settings['temperature']}, reward {settings['reward']}; validation: {val_metric_label(settings)}.",
        "",
        "| arm | start acc | final acc | best acc | final - full [95% CI] | wall-clock / full | tokens / full "
        "| reached full's final |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in names:
        a = summary["arms"][arm]
        c = summary["comparisons"].get(arm)
        versus = ("(baseline)", "1", "1", "") if c is None else (
            _interval(c["final_acc_diff"]), _share(c["wall_ratio"]), _share(c["token_ratio"]),
            f"{c['reached_full_final']} of {len(seeds)}")
        lines.append(f"| {ARMS[arm].label} | {_pm(a['initial_acc'])} | {_pm(a['final_acc'])} | {_pm(a['best_acc'])} "
                     f"| {' | '.join(versus)} |")
    diag_names = [m for m in DIAGNOSTIC_METRICS if any(m in summary["arms"][arm]["diagnostics"] for arm in names)]
    if diag_names:
        lines += ["", "Diagnostics, mean over training steps (mean ± std over seeds):", "",
                  "| arm | " + " | ".join(f"`{m}`" for m in diag_names) + " |", "|---|" + "---|" * len(diag_names)]
        for arm in names:
            diag = summary["arms"][arm]["diagnostics"]
            lines.append(f"| {ARMS[arm].label} | " + " | ".join(
                _share(diag.get(m)) if m in diag else "" for m in diag_names) + " |")
    lines += ["", "Final accuracy per seed (every arm starts from the same model):", "",
              "| seed | start acc | " + " | ".join(ARMS[arm].label for arm in names) + " |",
              "|---:|---:|" + "---:|" * len(names)]
    for seed in seeds:
        runs_of_seed = [summary["arms"][arm]["per_seed"][seed] for arm in names]
        lines.append(f"| {seed} | {runs_of_seed[0]['initial_acc']:.3f} | "
                     + " | ".join(f"{run['final_acc']:.3f}" for run in runs_of_seed) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- plots


def plot_curves(runs: dict[str, dict[int, list[dict]]], summary: dict[str, Any], x_field: str, x_label: str,
                y_label: str, out_path: Path, title: str) -> None:
    """Accuracy against ``x_field``: each seed thin, the mean over seeds thick with a min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for arm in summary["arms"]:
        color = ARMS[arm].color
        for curve in runs[arm].values():
            ax.plot([p[x_field] for p in curve], [p["acc"] for p in curve], color=color, alpha=0.3, linewidth=0.8)
        mean = summary["arms"][arm]["mean_curve"]
        xs = [p[x_field]["mean"] for p in mean]
        ax.plot(xs, [p["acc"]["mean"] for p in mean], color=color, linewidth=2.2, marker="o", markersize=3.5,
                label=f"{ARMS[arm].label} (mean of {len(summary['seeds'])} seeds)")
        ax.fill_between(xs, [p["acc"]["min"] for p in mean], [p["acc"]["max"] for p in mean], color=color,
                        alpha=0.12, linewidth=0)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------- the runs


def rl_overrides(args: argparse.Namespace, arm: str, seed: int, run_dir: Path, model_dir: Path) -> list[str]:
    """The recipe config of one run: ``rpo_cpu_tiny`` with the experiment's budget; only ``rpo.enable`` differs
    between the arms of a seed. The user's overrides come last and win."""
    return [
        f"actor_rollout_ref.model.path={model_dir}",
        f"data.train_max_samples={args.train_prompts}",
        f"data.train_batch_size={args.prompts}",
        f"data.gen_batch_size={args.prompts}",
        f"data.max_response_length={args.response_length}",
        f"data.seed={seed}",
        f"actor_rollout_ref.rollout.n={args.group_size}",
        f"actor_rollout_ref.rollout.seed={seed}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={args.prompts * args.group_size}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={args.prompts * args.group_size}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={args.prompts * args.group_size}",
        f"actor_rollout_ref.actor.optim.lr={args.actor_lr}",
        f"actor_rollout_ref.rollout.temperature={args.temperature}",
        f"actor_rollout_ref.rollout.val_kwargs.do_sample={str(args.val_temperature > 0).lower()}",
        f"actor_rollout_ref.rollout.val_kwargs.temperature={args.val_temperature}",
        f"actor_rollout_ref.rollout.val_kwargs.n={args.val_samples}",
        *REWARD_OVERRIDES[args.reward],
        f"rpo.seed={seed}",
        f"rpo.truncation.mode={args.truncation_mode}",
        f"rpo.truncation.max_new_tokens={args.suffix_budget}",
        f"trainer.total_training_steps={args.steps}",
        f"trainer.test_freq={args.test_freq}",
        "trainer.val_before_train=true",
        "trainer.save_freq=-1",
        "trainer.resume_mode=disable",
        "trainer.logger=[console,file]",
        "trainer.project_name=rpo-learning-cpu",
        f"trainer.experiment_name={arm}_seed{seed}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        "+ray_kwargs.ray_init.include_dashboard=false",
        *(override.format(suffix_budget=args.suffix_budget) for override in ARMS[arm].overrides),
        *args.overrides,
    ]


def run_arm(args: argparse.Namespace, arm: str, seed: int, assets_dir: Path, model_dir: Path) -> dict[str, Any]:
    """One RL run in its own process (its own Ray cluster, shut down on exit); returns its curve and wall time."""
    run_dir = Path(args.work_dir) / "runs" / f"{arm}_seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path, log_path = run_dir / "metrics.jsonl", run_dir / "train.log"
    metrics_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "VERL_PLATFORM": "cpu",
        "RPO_TINY_DIR": str(assets_dir),
        "VERL_FILE_LOGGER_PATH": str(metrics_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "TOKENIZERS_PARALLELISM": "false",
        "HYDRA_FULL_ERROR": "1",
    }
    command = [sys.executable, "-m", "recipe.rpo.main_rpo", "--config-name", "rpo_cpu_tiny",
               *rl_overrides(args, arm, seed, run_dir, model_dir)]
    print(f"[{time.strftime('%H:%M:%S')}] {ARMS[arm].label}, seed {seed}: log {log_path}", flush=True)
    started = time.monotonic()
    with open(log_path, "w") as log:
        returncode = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    process_s = time.monotonic() - started
    if returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{arm} seed {seed}: the trainer exited with {returncode} (log {log_path}):\n{tail}")
    metric_lines = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    curve = run_curve(metric_lines)
    if curve[-1]["step"] != args.steps:
        raise RuntimeError(f"{arm} seed {seed}: last validation at step {curve[-1]['step']}, expected {args.steps} "
                           f"(metrics {metrics_path})")
    end = curve[-1]
    print(f"    acc {curve[0]['acc']:.3f} -> {end['acc']:.3f}, training {end['wall_s']:.0f} s, "
          f"{end['generated_tokens']:.0f} generated tokens, process {process_s:.0f} s", flush=True)
    return {"curve": curve, "diagnostics": run_diagnostics(metric_lines), "process_s": process_s,
            "metrics_path": str(metrics_path)}


def prepare_start(args: argparse.Namespace) -> tuple[Path, Path, dict[str, Any]]:
    """The tiny assets and the SFT warm-up (verl's SFT trainer), reused when already current; returns the assets
    directory, the warm model directory and what the warm-up cost."""
    from verl_ext.tiny import ensure_tiny_assets, warmup

    assets_dir = (Path(args.work_dir) / "assets").resolve()
    ensure_tiny_assets(assets_dir)
    params = warmup.WarmupParams()
    reused = warmup.is_current(assets_dir, params)
    started = time.monotonic()
    if not reused:
        print(f"[{time.strftime('%H:%M:%S')}] SFT warm-up with verl's SFT trainer ({params})", flush=True)
        warmup.warm_up(assets_dir, params)
    info = {"params": asdict(params), "reused": reused, "wall_s": None if reused else time.monotonic() - started}
    return assets_dir, warmup.warm_dir(assets_dir), info


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(DEFAULT_ARMS),
                        help=f"arms to run, run in this order within each seed; {BASELINE} is always included")
    parser.add_argument("--steps", type=int, default=12, help="RL steps per run (trainer.total_training_steps)")
    parser.add_argument("--test-freq", type=int, default=4, help="validate every N steps (and before training)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step (data.train_batch_size)")
    parser.add_argument("--train-prompts", type=int, default=32,
                        help="training prompts (data.train_max_samples); steps * prompts / this = epochs")
    parser.add_argument("--group-size", type=int, default=4, help="G (actor_rollout_ref.rollout.n)")
    parser.add_argument("--response-length", type=int, default=96, help="data.max_response_length")
    parser.add_argument("--suffix-budget", type=int, default=48, help="rpo.truncation.max_new_tokens")
    parser.add_argument("--truncation-mode", choices=["tail", "uniform"], default="tail")
    parser.add_argument("--temperature", type=float, default=0.7, help="rollout sampling temperature")
    parser.add_argument("--val-samples", type=int, default=4, help="samples per val prompt (val_kwargs.n)")
    parser.add_argument("--val-temperature", type=float, default=0.7, help="val sampling temperature (0: greedy)")
    parser.add_argument("--reward", choices=sorted(REWARD_OVERRIDES), default="acc",
                        help="acc: accuracy only; paper: accuracy + format + cosine length")
    parser.add_argument("--actor-lr", type=float, default=3e-5, help="actor_rollout_ref.actor.optim.lr")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="curves.json, PNG plots and summary.md go here")
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK), help="assets, warm-up and per-run logs")
    parser.add_argument("--replot", action="store_true", help="only redo the summary and plots from OUT/curves.json")
    parser.add_argument("overrides", nargs="*", help="hydra overrides (key=value) for every RL run, applied last")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.test_freq < 1 or args.steps % args.test_freq:
        parser.error(f"--steps ({args.steps}) must be a positive multiple of --test-freq ({args.test_freq})")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    if len(set(args.arms)) != len(args.arms):
        parser.error(f"--arms repeats an arm: {args.arms}")
    args.arms = list(dict.fromkeys([BASELINE, *args.arms]))
    args.out, args.work_dir = str(Path(args.out).resolve()), str(Path(args.work_dir).resolve())
    return args


def write_report(out: Path, runs: dict[str, dict[int, list[dict]]], settings: dict[str, Any], machine: dict,
                 wall_s: float, details: dict[str, dict[int, dict]]) -> str:
    """curves.json (with the summary recomputed from ``runs``), the two plots and summary.md; returns the text."""
    diagnostics = {arm: {seed: run.get("diagnostics", {}) for seed, run in by_seed.items()}
                   for arm, by_seed in details.items()}
    summary = summarize(runs, diagnostics)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "summary": summary, "settings": settings, "machine": machine, "wall_s": wall_s,
        "runs": {arm: {str(seed): details[arm][seed] for seed in runs[arm]} for arm in runs},
    }
    (out / "curves.json").write_text(json.dumps(result, indent=2) + "\n")
    subtitle = f"tiny Qwen2 on CPU, {len(summary['seeds'])} seeds, {settings['steps']} steps"
    y_label = val_metric_label(settings)
    plot_curves(runs, summary, "wall_s", "training wall-clock (s, rollout + update)", y_label,
                out / "accuracy_vs_wallclock.png", f"Accuracy vs training wall-clock ({subtitle})")
    plot_curves(runs, summary, "generated_tokens", "generated tokens (cumulative)", y_label,
                out / "accuracy_vs_generated_tokens.png", f"Accuracy vs generated tokens ({subtitle})")
    reused = settings["warmup"]["reused"]
    footer = (f"Whole experiment (warm-up {'reused' if reused else 'included'}): {wall_s / 60:.1f} min on "
              f"{machine.get('cpu_count')} cores ({machine.get('cpu_model')}).")
    text = f"{markdown_summary(summary, settings)}\n\n{footer}"
    (out / "summary.md").write_text(text + "\n")
    return text


def replot(out: Path) -> str:
    """Rebuild the summary, plots and table from ``out/curves.json`` (e.g. after changing how they are drawn)."""
    saved = json.loads((out / "curves.json").read_text())
    details = {arm: {int(seed): run for seed, run in by_seed.items()} for arm, by_seed in saved["runs"].items()}
    runs = {arm: {seed: run["curve"] for seed, run in details[arm].items()} for arm in details}
    return write_report(out, runs, saved["settings"], saved["machine"], saved["wall_s"], details)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.replot:
        print(replot(Path(args.out)))
        return 0
    started = time.monotonic()
    from verl_ext.machine import machine_info

    machine = machine_info("cpu")
    assets_dir, model_dir, warm = prepare_start(args)
    runs: dict[str, dict[int, list[dict]]] = {arm: {} for arm in args.arms}
    details: dict[str, dict[int, dict]] = {arm: {} for arm in args.arms}
    for seed in args.seeds:
        for arm in args.arms:
            result = run_arm(args, arm, seed, assets_dir, model_dir)
            runs[arm][seed], details[arm][seed] = result["curve"], result
    import pandas as pd

    settings = {
        "seeds": args.seeds, "arms": {arm: list(ARMS[arm].overrides) for arm in args.arms}, "steps": args.steps,
        "test_freq": args.test_freq, "prompts_per_step": args.prompts,
        "train_prompts": args.train_prompts,
        "group_size": args.group_size, "response_length": args.response_length, "suffix_budget": args.suffix_budget,
        "truncation_mode": args.truncation_mode, "actor_lr": args.actor_lr, "temperature": args.temperature,
        "reward": args.reward, "val_samples": args.val_samples, "val_temperature": args.val_temperature,
        "overrides": args.overrides,
        "val_prompts": len(pd.read_parquet(assets_dir / "data" / "val.parquet")), "model": str(model_dir),
        "warmup": warm,
    }
    text = write_report(Path(args.out), runs, settings, machine, time.monotonic() - started, details)
    print(f"\n{text}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
