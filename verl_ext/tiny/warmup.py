"""Supervised warm-up of the tiny model with verl's own SFT trainer, so RL starts from a model that sometimes
answers correctly (a random model never does, and GRPO learns nothing from groups that all score zero).

The training is verl's: ``torchrun -m verl.trainer.sft_trainer`` (FSDP2 engine) with the CPU preset
``verl_ext/cpu/config/sft_trainer_cpu.yaml`` and ``VERL_PLATFORM=cpu``. Its checkpoint manager also writes the
trained weights as a Hugging Face folder (``checkpoint.save_contents=[hf_model]``), in fp32 as trained. That is
preferred over ``verl.model_merger``, which casts every weight to bf16. The exported ``config.json`` is not
used: verl writes it from a bf16 template model, so it says ``dtype: bfloat16`` over fp32 weights and drops
``bos_token_id``. The base model's own config, generation config and tokenizer files are copied instead; SFT
changes none of them.

DIR/warm is then a complete HF model directory (transformers and vLLM load it), stamped with the assets' build
stamp and the warm-up parameters: a second call with the same ones does nothing.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from verl_ext.tiny.assets import STAMP_NAME as BUILD_STAMP_NAME
from verl_ext.tiny.assets import TinyAssets

WARM_DIR_NAME = "warm"
RUN_DIR_NAME = "warm_run"
STAMP_NAME = "warmup.json"
LOG_NAME = "sft.log"
WEIGHTS_NAME = "model.safetensors"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "cpu" / "config"
CONFIG_NAME = "sft_trainer_cpu"
# Bump when the training command or the export changes, so existing warm-ups are redone.
WARMUP_FORMAT = 1

# verl's console logger prints one line per step: "step:12 - ... - train/loss:1.234 - ...".
_STEP_LOSS = re.compile(r"step:(\d+) - .*?train/loss:([-+0-9.eE]+|nan|inf)")


class WarmupError(RuntimeError):
    """The warm-up could not run or produced no usable model."""


@dataclass(frozen=True)
class WarmupParams:
    """What the warm-up trains with; every field is part of the idempotence stamp.

    The defaults suit the default build (preset tiny, 2-3 digit operands, 2000 SFT examples), about 3 minutes on 2
    cores. The model learns the column sums abruptly under this schedule (greedy val accuracy 38% after 280 steps),
    and after 300 it still errs when it samples: at temperature 0.7 it solves about 64% of the val problems per
    sample, which leaves RL mixed-reward groups to learn from. The 280-step model (25% per sample) is a start that
    RL on this model degrades rather than improves (see the README's Evidence section).
    """

    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 32
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1
    seed: int = 1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"steps, batch_size and lr must be positive: {self}")
        if self.lr_scheduler not in ("constant", "cosine"):
            raise ValueError(f"lr_scheduler must be 'constant' or 'cosine' (verl's choices), not {self.lr_scheduler!r}")


def warm_dir(assets_dir: str | Path) -> Path:
    return Path(assets_dir) / WARM_DIR_NAME


def _stamp(assets_dir: Path, params: WarmupParams) -> dict:
    build_stamp = assets_dir / BUILD_STAMP_NAME
    if not build_stamp.is_file():
        raise WarmupError(f"{assets_dir} holds no tiny build; run `python -m verl_ext.tiny build --out {assets_dir}`")
    return {"format": WARMUP_FORMAT, "assets": json.loads(build_stamp.read_text()), "params": asdict(params)}


def is_current(assets_dir: str | Path, params: WarmupParams) -> bool:
    """True when DIR/warm was produced from exactly these assets with exactly ``params``."""
    assets_dir = Path(assets_dir)
    stamp_path = warm_dir(assets_dir) / STAMP_NAME
    if not stamp_path.is_file() or not (warm_dir(assets_dir) / WEIGHTS_NAME).is_file():
        return False
    return json.loads(stamp_path.read_text()) == _stamp(assets_dir, params)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """verl's SFT dataloader drops the last partial batch."""
    if n_examples < batch_size:
        raise WarmupError(f"batch size {batch_size} exceeds the {n_examples} SFT examples")
    return n_examples // batch_size


def sft_command(assets: TinyAssets, params: WarmupParams, run_dir: Path, n_examples: int) -> list[str]:
    """The torchrun command line for verl's SFT trainer.

    ``total_epochs`` is raised to cover ``steps``: verl stops after ``total_epochs`` even if ``total_training_steps``
    is not reached, and then never saves the final checkpoint. Only ``hf_model`` is saved (no optimizer or
    sharded model state, which nothing resumes from), and resuming is disabled so that a leftover checkpoint can
    never be continued silently."""
    epochs = math.ceil(params.steps / steps_per_epoch(n_examples, params.batch_size))
    overrides = [
        f"model.path={assets.model_dir}",
        f"data.train_files={assets.sft_path}",
        f"data.train_batch_size={params.batch_size}",
        f"data.micro_batch_size_per_gpu={params.batch_size}",
        f"optim.lr={params.lr}",
        f"optim.lr_scheduler_type={params.lr_scheduler}",
        f"optim.lr_warmup_steps_ratio={params.warmup_ratio}",
        f"optim.min_lr_ratio={params.min_lr_ratio}",
        f"trainer.total_training_steps={params.steps}",
        f"trainer.total_epochs={epochs}",
        f"trainer.seed={params.seed}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        "trainer.resume_mode=disable",
        "trainer.project_name=tiny-warmup",
        "trainer.experiment_name=sft",
        "checkpoint.save_contents=[hf_model]",
        f"hydra.run.dir={run_dir}",
        "hydra.output_subdir=null",
    ]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
        "-m", "verl.trainer.sft_trainer", "--config-dir", str(CONFIG_DIR), "--config-name", CONFIG_NAME,
        *overrides,
    ]


def parse_losses(console_output: str) -> dict[int, float]:
    """Per-step training loss from verl's console log lines."""
    return {int(step): float(loss) for step, loss in _STEP_LOSS.findall(console_output)}


def _run_streaming(command: list[str], cwd: Path, log_path: Path, console: TextIO) -> str:
    """Run with the CPU platform selected, echoing verl's output live to ``console`` and to ``log_path``."""
    env = {**os.environ, "VERL_PLATFORM": "cpu", "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    lines: list[str] = []
    with open(log_path, "w") as log, subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                lines.append(line)
                log.write(line)
                console.write(line)
                console.flush()
        except BaseException:
            proc.kill()  # torchrun and its trainer must not outlive an interrupted warm-up
            raise
    output = "".join(lines)
    if proc.returncode != 0:
        tail = "".join(lines[-40:])
        raise WarmupError(f"verl's SFT trainer exited with {proc.returncode} (full log: {log_path}):\n{tail}")
    return output


def _export(assets: TinyAssets, hf_checkpoint: Path, out_dir: Path) -> None:
    """DIR/warm = the trained weights from verl's HF export + every other file of the base model directory."""
    weights = hf_checkpoint / WEIGHTS_NAME
    if not weights.is_file():
        raise WarmupError(f"verl's checkpoint has no {WEIGHTS_NAME} in {hf_checkpoint}")
    out_dir.mkdir(parents=True)
    for path in assets.model_dir.iterdir():
        if path.is_file() and path.suffix != ".safetensors":
            shutil.copy2(path, out_dir / path.name)
    shutil.copy2(weights, out_dir / WEIGHTS_NAME)


def warm_up(assets_dir: str | Path, params: WarmupParams, console: TextIO = sys.stdout) -> dict[int, float]:
    """Train DIR/model on DIR/data/sft.parquet with verl's SFT trainer and write DIR/warm.

    Returns the per-step losses verl logged. Raises WarmupError when verl fails or logs no loss."""
    import pyarrow.parquet as pq

    # Absolute: verl's trainer runs in the run directory, where a relative model path would be read as a hub id.
    assets_dir = Path(assets_dir).resolve()
    assets = TinyAssets.at(assets_dir)
    stamp = _stamp(assets_dir, params)
    n_examples = pq.ParquetFile(assets.sft_path).metadata.num_rows
    run_dir, out_dir = assets_dir / RUN_DIR_NAME, warm_dir(assets_dir)
    for stale in (run_dir, out_dir):
        shutil.rmtree(stale, ignore_errors=True)
    run_dir.mkdir(parents=True)

    output = _run_streaming(sft_command(assets, params, run_dir, n_examples), run_dir, run_dir / LOG_NAME, console)
    losses = parse_losses(output)
    if not losses:
        raise WarmupError(f"verl's SFT trainer logged no training loss (log: {run_dir / LOG_NAME})")
    _export(assets, run_dir / "checkpoints" / f"global_step_{params.steps}" / "huggingface", out_dir)
    shutil.move(run_dir / LOG_NAME, out_dir / LOG_NAME)
    shutil.rmtree(run_dir)
    (out_dir / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n")
    return losses
