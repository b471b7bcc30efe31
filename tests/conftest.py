"""Shared fixtures: the tiny offline assets and a runner for verl jobs on CPU (subprocesses, as users run them)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory: pytest.TempPathFactory):
    """A random tiny Qwen2 model, its tokenizer and the arithmetic data, built offline once per session."""
    from verl_ext.tiny import ensure_tiny_assets

    return ensure_tiny_assets(tmp_path_factory.mktemp("tiny_assets"))


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """Import ``scripts/<name>.py`` as a module (scripts are not a package), for tests of their pure helpers."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@dataclass
class JobResult:
    returncode: int
    output: str
    metrics: list[dict]

    def step(self, n: int) -> dict:
        """The metrics verl's tracking logged for training step ``n`` (the last record for that step)."""
        records = [m["data"] for m in self.metrics if m["step"] == n and "training/global_step" in m["data"]]
        assert records, f"no metrics for step {n}; steps logged: {[m['step'] for m in self.metrics]}\n{self.tail()}"
        return records[-1]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def stop_ray() -> None:
    """Stop the Ray cluster a killed driver left behind (a driver that exits normally shuts its cluster down)."""
    ray_bin = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120, check=False)


@pytest.fixture
def run_verl_job(tmp_path: Path) -> Callable[..., JobResult]:
    """Run ``python -m <module> <args>`` with the CPU backend selected; metrics come from verl's file logger."""

    def run(
        module: str,
        args: list[str],
        *,
        timeout: int = 900,
        env: Optional[dict[str, str]] = None,
        kill_when: Optional[Callable[[], bool]] = None,
        metrics_name: str = "metrics.jsonl",
    ) -> JobResult:
        metrics_path = tmp_path / metrics_name
        full_env = {
            **os.environ,
            "VERL_PLATFORM": "cpu",
            "VERL_FILE_LOGGER_PATH": str(metrics_path),
            "TENSORBOARD_DIR": str(tmp_path / "tensorboard"),
            "PYTHONUNBUFFERED": "1",
            "HYDRA_FULL_ERROR": "1",
            **(env or {}),
        }
        log_path = tmp_path / f"{metrics_name}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=full_env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
            try:
                if kill_when is None:
                    returncode = proc.wait(timeout=timeout)
                else:
                    returncode = _wait_or_kill(proc, kill_when, timeout)
            finally:
                killed = proc.poll() is None or kill_when is not None
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                if killed:
                    stop_ray()
        metrics = [json.loads(line) for line in metrics_path.read_text().splitlines()] if metrics_path.exists() else []
        return JobResult(returncode, log_path.read_text(errors="replace"), metrics)

    return run


def _wait_or_kill(proc: subprocess.Popen, kill_when: Callable[[], bool], timeout: int) -> int:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        if kill_when():
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()
        # The tiny jobs can save consecutive checkpoints ~0.3 s apart: poll well within that.
        time.sleep(0.02)
    raise TimeoutError(f"job did not finish or reach its kill condition within {timeout} s")
