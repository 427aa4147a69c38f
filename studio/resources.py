"""The machine's resources (CPU, GPU, memory) shown in the studio header and used for memory fit."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

import psutil
from loguru import logger


@dataclass(frozen=True)
class GpuInfo:
    """One GPU.

    Attributes:
        name: Device name.
        total_mb: Memory in MB.
        used_mb: Memory in use in MB (None when unknown).
    """

    name: str
    total_mb: float
    used_mb: float | None = None


@functools.lru_cache(maxsize=1)
def gpus() -> tuple[GpuInfo, ...]:
    """GPUs of this machine, read once through ``nvidia-smi`` (no torch import needed).

    Returns:
        The GPUs (empty on a CPU-only machine).
    """
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return ()
    try:
        output = subprocess.run(
            [executable, "--query-gpu=name,memory.total,memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        logger.debug("nvidia-smi failed: {}", error)
        return ()
    found = []
    for line in output.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) >= 3:
            found.append(GpuInfo(parts[0], float(parts[1]), float(parts[2])))
    return tuple(found)


def available_memory_mb() -> tuple[float, str]:
    """Memory a training run can use: the largest GPU's memory, else the machine's available RAM.

    Returns:
        ``(megabytes, "GPU" or "RAM")``.
    """
    devices = gpus()
    if devices:
        return max(device.total_mb for device in devices), "GPU"
    return psutil.virtual_memory().available / 2**20, "RAM"


def resources_markdown(active_run: str | None = None) -> str:
    """One line describing CPU, memory, GPU and the active run, for the header.

    Args:
        active_run: The run training now, if any.

    Returns:
        Markdown text.
    """
    memory = psutil.virtual_memory()
    cpu_percent = psutil.cpu_percent(interval=None)
    parts = [
        f"**CPU** {os.cpu_count()} cores · {cpu_percent:.0f}%",
        f"**RAM** {memory.used / 2**30:.1f} / {memory.total / 2**30:.1f} GB",
    ]
    devices = gpus()
    if devices:
        parts.extend(f"**GPU** {device.name} · {device.total_mb / 1024:.0f} GB" for device in devices)
    else:
        parts.append("**GPU** none (CPU training)")
    parts.append(f"**Active run** {active_run}" if active_run else "**Active run** none")
    return " &nbsp;|&nbsp; ".join(parts)
