"""Rollout cost of RPO against the full path, measured through the recipe's own trainer and rollout engine.

    python scripts/bench_rollout.py --response-length 2048 --suffix-budget 256 --json OUT.json

One trainer process (verl's TaskRunner with ``RayRPOTrainer``, the FSDP actor and the vLLM rollout server with
prefix caching on, as in training; vLLM's CPU build with ``--device cpu``) runs:

* ``--warmup-steps`` RPO steps that fill the experience cache (step 1 seeds one full answer per prompt), then
* ``--rounds`` counted rounds; a round runs each arm of ``--arms`` once, in order, on the same prompts (the batch is
  the whole data set of ``--prompts`` prompts, so every RPO step is all cache hits).

Arms (``ARMS`` in ``verl_ext/experiments/bench/arms.py``): ``rpo`` (RPO with ``rpo.shared_prefix=true``), ``full`` (the
full path as verl runs it:
``rpo.enable=false``, ``rpo.shared_prefix=false``, the baseline of every ratio), ``full_shared`` (the full path with
the shared prompt computed once per group), ``rpo_unshared`` (RPO with verl's own training passes),
``rpo_verified`` (RPO with ``rpo.truncation.mode=verified``; the run then keeps behaviour log-probs in the cache and
reports ``rpo/verify_s``). A full-path step
is the trainer's own ``rpo.enable=false`` branch (G full answers per prompt through verl's ``single_turn_agent``); an
RPO step is ``PartialRollout`` (G suffixes of at most ``--suffix-budget`` tokens after a cut of the cached answer).
Every step then trains as usual, so the model drifts the same way for all arms and the whole-step time is real.
Each step logs ``bench/arm`` (its index in ``ARMS``) and ``bench/warmup``. Reported per step: generated tokens
(``rpo/generated_tokens``), rollout seconds (``timing_s/gen``), old log-prob and update seconds, whole-step seconds
(``timing_s/step``); per round each arm's ratios to ``full``, and their min/median/max. The headline
``step_time_ratio`` is ``rpo`` against ``full``.

``--answers budget`` (default) sets the rollout's ``ignore_eos``: every answer runs to its token budget, the regime
of long reasoning answers the paper targets (a random tiny model would otherwise stop after a few hundred tokens:
its EOS probability is about 1/vocab per token). ``--answers natural`` lets the model stop at EOS.

Time goes to (per step, in the JSON records): the engine round trip (``engine_call_s``: the agent-loop workers,
vLLM, streamed reward scoring, Ray transfers), inside it the slowest request's generate time
(``agent_loop/generate_sequences/max``) and reward scoring; the rest of ``timing_s/gen`` is driver-side work
(batch assembly, reward extraction, cache update).

The pure parts (``arms``, ``records``) import no verl; the run imports verl (``trainer``) after selecting the
platform.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from verl_ext.experiments.bench.arms import ARMS, BASELINE_ARM, DEFAULT_ARMS, total_steps
from verl_ext.experiments.bench.records import markdown_table, step_records, summarize

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TINY_DIR = REPO_ROOT / ".cache" / "bench_tiny"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="RPO vs full-path rollout cost through the recipe's trainer (alternating steps, one process).",
        epilog="Trailing key=value arguments are hydra overrides of the recipe config, applied last.",
    )
    parser.add_argument(
        "--response-length", type=int, default=1024, help="response budget R (data.max_response_length)"
    )
    parser.add_argument("--suffix-budget", type=int, default=128, help="rpo.truncation.max_new_tokens")
    parser.add_argument("--group-size", type=int, default=4, help="G (actor_rollout_ref.rollout.n)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step; also the data set size")
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds (each arm once per round)")
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=list(ARMS),
        default=list(DEFAULT_ARMS),
        help=f"arms of a round; must include {BASELINE_ARM}",
    )
    parser.add_argument("--warmup-steps", type=int, default=1, help="RPO steps before counting (the first seeds)")
    parser.add_argument("--max-prompt-length", type=int, default=64, help="data.max_prompt_length")
    parser.add_argument("--truncation-mode", choices=["tail", "uniform"], default="tail", help="rpo.truncation.mode")
    parser.add_argument(
        "--answers",
        choices=["budget", "natural"],
        default="budget",
        help="budget: rollout ignore_eos, every answer runs to its budget (long answers); natural: stop at EOS",
    )
    parser.add_argument("--model", default=None, help="HF model directory (default: the random tiny model)")
    parser.add_argument("--train-file", default=None, help="RL parquet (default: the tiny arithmetic data)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--gpus",
        type=int,
        default=1,
        help="trainer.n_gpus_per_node: data-parallel actor ranks and rollout replicas (on CPU too)",
    )
    parser.add_argument(
        "--token-budget-factor",
        type=float,
        default=6.0,
        help="dynamic batch size: update tokens per GPU = factor x (max prompt + response), "
        "log-prob passes twice that (scripts/repro: 6 for 1.5B, 4 for 7B)",
    )
    parser.add_argument(
        "--micro-batch-size",
        type=int,
        default=8,
        help="*_static arms: rows per micro-batch and GPU in all three passes (the CPU config's 8)",
    )
    parser.add_argument("--tiny-dir", default=str(DEFAULT_TINY_DIR), help="where the tiny model and data are built")
    parser.add_argument("--work-dir", default=None, help="metrics, checkpoints dir (default: a temporary directory)")
    parser.add_argument("--json", dest="json_path", default=None, help="write the summary here")
    parser.add_argument("overrides", nargs="*", help="hydra overrides (key=value), applied last")
    args = parser.parse_args(argv)
    for name in ("response_length", "suffix_budget", "group_size", "prompts", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if len(set(args.arms)) != len(args.arms) or any(ARMS[arm].baseline not in args.arms for arm in args.arms):
        parser.error(
            f"--arms must name each arm once and each arm's baseline ({BASELINE_ARM}; full_static for the "
            f"*_static arms), got {args.arms}"
        )
    if args.warmup_steps < 1:
        parser.error("--warmup-steps must be >= 1 (the first step seeds the cache)")
    if args.suffix_budget >= args.response_length:
        parser.error("--suffix-budget must be smaller than --response-length")
    if args.gpus < 1 or args.token_budget_factor < 1 or args.micro_batch_size < 1:
        parser.error("--gpus, --token-budget-factor and --micro-batch-size must be >= 1")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides must be key=value: {bad}")
    # The run changes to the repository root (Ray workers import recipe.rpo from there): resolve paths first.
    for name in ("model", "train_file", "tiny_dir", "work_dir", "json_path"):
        value = getattr(args, name)
        if value is not None and not (name == "model" and not Path(value).exists()):
            setattr(args, name, str(Path(value).expanduser().resolve()))
    return args


def tiny_max_positions(context: int) -> int:
    """Context length of the benchmark's tiny build: at least 8192 (one build serves budgets up to ~8k), else the
    needed context rounded up to a multiple of 1024."""
    return max(8192, -(-context // 1024) * 1024)


def recipe_overrides(args: argparse.Namespace, model: str, train_file: str, work_dir: Path) -> list[str]:
    """The recipe config for the benchmark: one batch = the whole data set (every RPO step is all cache hits), no
    validation or checkpoints, verl's file logger; the user's overrides come last and win."""
    steps = total_steps(args.warmup_steps, args.rounds, args.arms)
    context = args.max_prompt_length + args.response_length
    overrides = [
        f"data.train_files={train_file}",
        f"data.val_files={train_file}",
        f"data.train_max_samples={args.prompts}",
        f"data.val_max_samples={args.prompts}",
        f"data.train_batch_size={args.prompts}",
        f"data.gen_batch_size={args.prompts}",
        f"data.max_prompt_length={args.max_prompt_length}",
        f"data.max_response_length={args.response_length}",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.n={args.group_size}",
        f"actor_rollout_ref.rollout.max_model_len={context}",
        "actor_rollout_ref.rollout.enable_prefix_caching=true",
        f"actor_rollout_ref.rollout.ignore_eos={str(args.answers == 'budget').lower()}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts}",
        "rpo.enable=true",
        f"rpo.truncation.mode={args.truncation_mode}",
        f"rpo.truncation.max_new_tokens={args.suffix_budget}",
        "algorithm.filter_groups.enable=false",
        f"trainer.total_training_steps={steps}",
        f"trainer.total_epochs={steps}",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.resume_mode=disable",
        "trainer.logger=[console,file]",
        "trainer.project_name=bench-rollout",
        "trainer.experiment_name=bench_rollout",
        f"trainer.default_local_dir={work_dir / 'checkpoints'}",
        # Ray's dashboard is a few processes of its own: only noise on a small CPU machine.
        "+ray_kwargs.ray_init.include_dashboard=false",
    ]
    if any(ARMS[arm].verified for arm in args.arms):
        overrides += ["rpo.cache.store_logprobs=true", "actor_rollout_ref.rollout.calculate_log_probs=true"]
    overrides += [f"trainer.n_gpus_per_node={args.gpus}"] + batching_overrides(args)
    if args.device == "cuda":
        overrides += ["trainer.device=cuda", "actor_rollout_ref.rollout.tensor_model_parallel_size=1"]
    return overrides + list(args.overrides)


def batching_overrides(args: argparse.Namespace) -> list[str]:
    """The training passes' micro-batching: dynamic batch size with scripts/repro's token budgets (the ``*_static``
    arms switch each step to fixed micro-batches, :func:`static_batching`)."""
    actor, rollout, ref = "actor_rollout_ref.actor", "actor_rollout_ref.rollout", "actor_rollout_ref.ref"
    update = int(args.token_budget_factor * (args.max_prompt_length + args.response_length))
    return [
        f"{actor}.use_dynamic_bsz=true",
        f"{rollout}.log_prob_use_dynamic_bsz=true",
        f"{ref}.log_prob_use_dynamic_bsz=true",
        f"{actor}.ppo_max_token_len_per_gpu={update}",
        f"{rollout}.log_prob_max_token_len_per_gpu={2 * update}",
        f"{ref}.log_prob_max_token_len_per_gpu={2 * update}",
    ]


def run_benchmark(args: argparse.Namespace) -> dict:
    started = time.monotonic()
    from verl_ext.experiments.machine import machine_info

    machine = machine_info(args.device)
    context = args.max_prompt_length + args.response_length
    if args.model is None or args.train_file is None:
        from verl_ext.tiny import ensure_tiny_assets

        assets = ensure_tiny_assets(args.tiny_dir, max_positions=tiny_max_positions(context))
        model = args.model or str(assets.model_dir)
        train_file = args.train_file or str(assets.train_path)
    else:
        model, train_file = args.model, args.train_file

    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_rollout_")).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = work_dir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)

    # verl picks its platform at import time; Ray workers inherit this environment (ray.init starts here).
    os.environ["VERL_FILE_LOGGER_PATH"] = str(metrics_path)
    os.environ.setdefault("RPO_TINY_DIR", str(Path(args.tiny_dir).resolve()))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.device == "cpu":
        os.environ["VERL_PLATFORM"] = "cpu"
    elif os.environ.get("VERL_PLATFORM") == "cpu":
        raise SystemExit("--device cuda with VERL_PLATFORM=cpu in the environment: unset it")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    os.chdir(REPO_ROOT)

    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    overrides = recipe_overrides(args, model, train_file, work_dir)
    config_name = "rpo_cpu_tiny" if args.device == "cpu" else "rpo_trainer"
    with initialize_config_dir(config_dir=str(REPO_ROOT / "recipe" / "rpo" / "config"), version_base=None):
        config = compose(config_name=config_name, overrides=overrides)
    with open_dict(config):
        config.bench = {
            "warmup_steps": args.warmup_steps,
            "rounds": args.rounds,
            "arms": list(args.arms),
            "micro_batch_size": args.micro_batch_size,
        }

    import ray

    from recipe.rpo.main_rpo import run_rpo
    from verl_ext.experiments.bench.trainer import BenchTaskRunner

    try:
        run_rpo(config, task_runner_cls=BenchTaskRunner)
    finally:
        if ray.is_initialized():
            ray.shutdown()

    lines = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    records = step_records(lines)
    settings = {
        "model": model,
        "train_file": train_file,
        "device": args.device,
        "response_length": args.response_length,
        "suffix_budget": args.suffix_budget,
        "group_size": args.group_size,
        "prompts": args.prompts,
        "rounds_requested": args.rounds,
        "arms": list(args.arms),
        "warmup_steps": args.warmup_steps,
        "max_prompt_length": args.max_prompt_length,
        "truncation_mode": args.truncation_mode,
        "answers": args.answers,
        "ignore_eos": args.answers == "budget",
        "prefix_caching": bool(config.actor_rollout_ref.rollout.enable_prefix_caching),
        "config_name": config_name,
        "overrides": overrides,
        "metrics_path": str(metrics_path),
    }
    return summarize(records, settings, machine, wall_s=time.monotonic() - started, arms=args.arms)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    summary = run_benchmark(args)
    table = markdown_table(summary)
    print("\n" + table)
    if args.json_path:
        out = Path(args.json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"\nwrote {out}")
    if summary["rounds"] < 1:
        print("no counted round: see the metrics file", summary["settings"]["metrics_path"])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
