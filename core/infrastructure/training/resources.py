"""Memory measurement of the training process (RSS on CPU, allocator peaks on CUDA)."""

from __future__ import annotations

import resource
import sys

import psutil
import torch


def current_memory_mb() -> float:
    """Memory in use now: CUDA allocated memory when on a GPU, else the process's resident set.

    Returns:
        Megabytes.
    """
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.memory_allocated() / 2**20
    return psutil.Process().memory_info().rss / 2**20


def peak_memory_mb() -> float:
    """Peak memory so far: CUDA peak allocation on a GPU, else the process's peak resident set.

    Returns:
        Megabytes.
    """
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    own_peak_kb = _resident_high_water_kb()
    if own_peak_kb is not None:
        return own_peak_kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _resident_high_water_kb() -> int | None:
    """This process's own peak resident set (Linux ``VmHWM``), or None where /proc is not there.

    ``ru_maxrss`` is not this: Linux carries it over from the parent through fork and exec, so a
    run started by a large process (the studio, a test session) would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def hardware_description(device: torch.device) -> dict[str, object]:
    """Describes the training hardware for the manifest.

    Args:
        device: The training device.

    Returns:
        Device type, name, core count and memory.
    """
    info: dict[str, object] = {
        "device": device.type,
        "cpu_count": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(gpu=properties.name, gpu_memory_gb=round(properties.total_memory / 2**30, 1))
    return info
