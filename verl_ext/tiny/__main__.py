"""Command line of the tiny assets.

* ``python -m verl_ext.tiny build --out DIR [--preset tiny] [--n-train 256 ...] [--max-positions 1024]``: writes
DIR/model (config,
  safetensors weights, tokenizer) and DIR/data/{train,val,sft}.parquet, or does nothing when DIR already holds a
  build with the same parameters.
* ``python -m verl_ext.tiny warmup --assets DIR [--steps N] [--lr X] ...``: supervised warm-up of DIR/model with
  verl's SFT trainer into DIR/warm, or nothing when DIR/warm was made from the same build and parameters.
* ``python -m verl_ext.tiny eval --model DIR --data FILE [--n N]``: greedy accuracy on an RL parquet.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from verl_ext.tiny.arithmetic import TASKS
from verl_ext.tiny.assets import TinyBuildParams, build_tiny_assets, is_current
from verl_ext.tiny.evaluate import MAX_RESPONSE_TOKENS

_BUILD_DEFAULTS = TinyBuildParams()


def _parser() -> argparse.ArgumentParser:
    from verl_ext.tiny.warmup import WarmupParams

    warmup_defaults = WarmupParams()
    parser = argparse.ArgumentParser(prog="python -m verl_ext.tiny", description="Tiny offline assets for RPO.")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build the tiny model, tokenizer and data sets (idempotent)")
    build.add_argument("--out", required=True, help="output directory")
    build.add_argument("--preset", choices=["tiny", "small"], default=_BUILD_DEFAULTS.preset)
    build.add_argument("--dtype", choices=["float32", "bfloat16"], default=_BUILD_DEFAULTS.dtype)
    for name in ("seed", "n_train", "n_val", "n_sft", "min_digits", "max_digits"):
        build.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(_BUILD_DEFAULTS, name))
    build.add_argument("--task", choices=list(TASKS), default=_BUILD_DEFAULTS.task, help="the synthetic task")
    build.add_argument(
        "--sft-slip-rate",
        type=float,
        default=_BUILD_DEFAULTS.sft_slip_rate,
        help="share of carry steps that slip in the SFT demonstrations (RL data is always right)",
    )
    build.add_argument(
        "--max-positions",
        type=int,
        default=_BUILD_DEFAULTS.max_positions,
        help="context length of the model (max_position_embeddings; caps vLLM's max_model_len)",
    )

    warmup = commands.add_parser("warmup", help="SFT warm-up with verl's SFT trainer into DIR/warm (idempotent)")
    warmup.add_argument("--assets", required=True, help="a directory written by `build`")
    warmup.add_argument("--lr-scheduler", choices=["constant", "cosine"], default=warmup_defaults.lr_scheduler)
    for field in fields(WarmupParams):
        if field.name != "lr_scheduler":
            warmup.add_argument(
                "--" + field.name.replace("_", "-"),
                type=type(getattr(warmup_defaults, field.name)),
                default=getattr(warmup_defaults, field.name),
            )

    evaluate = commands.add_parser("eval", help="greedy accuracy of a model on an RL parquet (vLLM, CPU)")
    evaluate.add_argument("--model", required=True, help="a Hugging Face model directory")
    evaluate.add_argument("--data", required=True, help="a parquet in verl's RL schema, e.g. DIR/data/val.parquet")
    evaluate.add_argument("--n", type=int, default=None, help="only the first N prompts")
    evaluate.add_argument(
        "--max-tokens",
        type=int,
        default=MAX_RESPONSE_TOKENS,
        help="response cap (the chain task's answers are 181 tokens)",
    )
    return parser


def _build(args: argparse.Namespace) -> None:
    params = TinyBuildParams(**{field.name: getattr(args, field.name) for field in fields(TinyBuildParams)})
    if is_current(args.out, params):
        print(f"{args.out} already holds this build ({params}); nothing to do")
        return
    assets = build_tiny_assets(args.out, params)
    print(f"built {params} into {args.out}:")
    for path in assets.files():
        print(f"  {path}")


def _warmup(args: argparse.Namespace) -> None:
    from verl_ext.tiny import warmup

    params = warmup.WarmupParams(**{field.name: getattr(args, field.name) for field in fields(warmup.WarmupParams)})
    out_dir = warmup.warm_dir(args.assets)
    if warmup.is_current(args.assets, params):
        print(f"{out_dir} already holds this warm-up ({params}); nothing to do")
        return
    losses = warmup.warm_up(args.assets, params)
    first, last = min(losses), max(losses)
    print(
        f"warmed up {params} into {out_dir}: loss {losses[first]:.3f} (step {first}) -> {losses[last]:.3f} "
        f"(step {last})"
    )


def _eval(args: argparse.Namespace) -> None:
    from verl_ext.tiny.evaluate import generate_and_score

    scored = generate_and_score(args.model, args.data, args.n, max_tokens=args.max_tokens)
    correct = sum(item.correct for item in scored)
    for item in scored[:3]:
        print(f"{item.prompt!r} -> {item.response!r} (truth {item.ground_truth}, {'ok' if item.correct else 'wrong'})")
    print(f"accuracy {correct}/{len(scored)} = {correct / len(scored):.3f}")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    {"build": _build, "warmup": _warmup, "eval": _eval}[args.command](args)


if __name__ == "__main__":
    main()
