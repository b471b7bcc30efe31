"""Builds the tiny model, tokenizer and data sets into one directory, once.

Tests, the demo and the CPU experiment all call ``ensure_tiny_assets``; a JSON stamp written after a complete
build records its parameters, so later calls with the same parameters return at once (an interrupted build has
no stamp and is redone). Torch, transformers and pandas are imported only when a build is needed, so the
up-to-date check stays instant.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

STAMP_NAME = "tiny_build.json"
# Bump when the tokenizer, model or task generation changes, so existing builds are redone.
BUILD_FORMAT = 1


@dataclass(frozen=True)
class TinyBuildParams:
    preset: str = "tiny"
    seed: int = 0
    n_train: int = 256
    n_val: int = 64
    n_sft: int = 2000
    min_digits: int = 2
    max_digits: int = 3
    dtype: str = "float32"
    # Context length of the model (max_position_embeddings, which caps vLLM's max_model_len).
    max_positions: int = 1024
    # verl_ext.tiny.arithmetic.TASKS: "addition" or "chain".
    task: str = "addition"
    # Carry slips in the SFT demonstrations (verl_ext.tiny.arithmetic.Slips); RL data is always right.
    sft_slip_rate: float = 0.0


# Fields added after BUILD_FORMAT 1 stay out of the stamp at their default, so builds stamped before they existed
# are still current (same files): field -> default.
_OMITTED_AT_DEFAULT = {"max_positions": 1024, "task": "addition", "sft_slip_rate": 0.0}


@dataclass(frozen=True)
class TinyAssets:
    """Where a build lives: model_dir holds config, weights and tokenizer (a complete HF model directory)."""

    model_dir: Path
    train_path: Path
    val_path: Path
    sft_path: Path

    @classmethod
    def at(cls, out_dir: str | Path) -> TinyAssets:
        root = Path(out_dir)
        data = root / "data"
        return cls(root / "model", data / "train.parquet", data / "val.parquet", data / "sft.parquet")

    def files(self) -> list[Path]:
        return [self.model_dir, self.train_path, self.val_path, self.sft_path]


def _stamp(params: TinyBuildParams) -> dict:
    fields = {
        name: value for name, value in asdict(params).items()
        if not (name in _OMITTED_AT_DEFAULT and value == _OMITTED_AT_DEFAULT[name])
    }
    return {"format": BUILD_FORMAT, **fields}


def is_current(out_dir: str | Path, params: TinyBuildParams) -> bool:
    """True when ``out_dir`` holds a complete build made with exactly ``params``."""
    stamp_path = Path(out_dir) / STAMP_NAME
    if not stamp_path.is_file() or not all(path.exists() for path in TinyAssets.at(out_dir).files()):
        return False
    return json.loads(stamp_path.read_text()) == _stamp(params)


def build_tiny_assets(out_dir: str | Path, params: TinyBuildParams) -> TinyAssets:
    """Builds everything unconditionally (overwriting a previous build) and stamps ``out_dir`` last."""
    from verl_ext.tiny.arithmetic import write_rl_parquet, write_sft_parquet
    from verl_ext.tiny.model import build_model
    from verl_ext.tiny.tokenizer import build_tokenizer

    assets = TinyAssets.at(out_dir)
    stamp_path = Path(out_dir) / STAMP_NAME
    stamp_path.unlink(missing_ok=True)
    assets.model_dir.mkdir(parents=True, exist_ok=True)
    assets.train_path.parent.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(assets.model_dir, model_max_length=params.max_positions)
    build_model(
        assets.model_dir, tokenizer, preset=params.preset, seed=params.seed, dtype=params.dtype,
        max_positions=params.max_positions,
    )
    digits = {"min_digits": params.min_digits, "max_digits": params.max_digits, "task": params.task}
    write_rl_parquet(assets.train_path, params.n_train, params.seed, "train", **digits)
    write_rl_parquet(assets.val_path, params.n_val, params.seed, "val", **digits)
    write_sft_parquet(assets.sft_path, params.n_sft, params.seed, slip_rate=params.sft_slip_rate, **digits)

    stamp_path.write_text(json.dumps(_stamp(params), indent=2) + "\n")
    return assets


def ensure_tiny_assets(out_dir: str | Path, **params: str | int | float) -> TinyAssets:
    """The build in ``out_dir`` for ``params`` (fields of TinyBuildParams), building it only if missing or
    made with other parameters."""
    build_params = TinyBuildParams(**params)
    if is_current(out_dir, build_params):
        return TinyAssets.at(out_dir)
    return build_tiny_assets(out_dir, build_params)
