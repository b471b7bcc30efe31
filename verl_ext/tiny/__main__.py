"""Command line: ``python -m verl_ext.tiny build --out DIR [--preset tiny] [--n-train 256 ...]``.

Writes DIR/model (config, safetensors weights, tokenizer) and DIR/data/{train,val,sft}.parquet, or does nothing
when DIR already holds a build with the same parameters.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from verl_ext.tiny.assets import TinyBuildParams, build_tiny_assets, is_current

_DEFAULTS = TinyBuildParams()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m verl_ext.tiny", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the tiny model, tokenizer and data sets (idempotent)")
    build.add_argument("--out", required=True, help="output directory")
    build.add_argument("--preset", choices=["tiny", "small"], default=_DEFAULTS.preset)
    build.add_argument("--dtype", choices=["float32", "bfloat16"], default=_DEFAULTS.dtype)
    for name in ("seed", "n_train", "n_val", "n_sft", "min_digits", "max_digits"):
        build.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(_DEFAULTS, name))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    params = TinyBuildParams(**{field.name: getattr(args, field.name) for field in fields(TinyBuildParams)})
    if is_current(args.out, params):
        print(f"{args.out} already holds this build ({params}); nothing to do")
        return
    assets = build_tiny_assets(args.out, params)
    print(f"built {params} into {args.out}:")
    for path in assets.files():
        print(f"  {path}")


if __name__ == "__main__":
    main()
