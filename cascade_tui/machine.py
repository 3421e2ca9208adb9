"""What machine a run happened on (session headers, bench reports)."""

from __future__ import annotations

import os
import platform
from typing import Any


def cpu_name() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def _version(dist: str) -> str | None:
    try:
        import importlib.metadata as md

        return md.version(dist)
    except Exception:
        return None


def machine_info(threads: int | None = None, target_extra: dict | None = None) -> dict[str, Any]:
    """CPU, cores, threads used, platform, Python, llama-cpp-python, and the GPU offload the
    loaded target reports (``ModelInfo.extra``)."""
    extra = target_extra or {}
    out: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "llama_cpp_python": _version("llama-cpp-python"),
    }
    for key in ("n_gpu_layers", "gpu_offload_supported", "device", "offloaded_layers"):
        if key in extra:
            out[key] = extra[key]
    return out


def offload_device(machine: dict) -> str | None:
    """The GPU(s) a run's layers went to (``machine_info``'s dict), None when it ran on the CPU."""
    dev = machine.get("device")
    return None if not dev or str(dev).lower() == "cpu" else str(dev)


def where_text(machine: dict) -> str:
    """Where a run computed, in a few words: the CPU and its threads, or the GPU the layers were
    offloaded to (``machine_info``'s dict, as session headers and bench reports carry it)."""
    cpu = f"{machine.get('cpu', '?')}, {machine.get('threads', '?')} threads"
    dev = offload_device(machine)
    if dev is None:
        return cpu
    layers = machine.get("offloaded_layers")
    return f"{dev}" + (f", {layers} layers" if layers else "") + f" (CPU: {cpu})"
