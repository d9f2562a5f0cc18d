"""The machine a run trains on: what a run records about it, and the name reports give it.

A study resumes wherever the next session runs, so its runs may train on several kinds of machine. fp32
arithmetic differs between CPU kinds by about as much as between thread counts (kernels sum in other orders),
and bf16 is native on some CPUs and emulated on others. Each run therefore records the machine it started on
(``describe``, in ``config.json``'s ``resolved``) and every machine it was resumed on (``resumed``), and a
study's report counts its runs per machine (``report.machine_blocks``), so a table mixing machines says so.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from .errors import TaskrelError
from .precision import cpu_has_fast_bf16


class DeviceError(TaskrelError, RuntimeError):
    pass


def resolve_device(name: str = "auto"):
    """The ``torch.device`` a run trains on: ``auto`` is the GPU when one is visible, else the CPU; ``cuda`` asked
    for without one is refused. torch is imported here, not with the module: reading records needs no torch."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' asked for, but no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(name)


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe() -> dict:
    """This machine, as a run records it: CPU model, cores, native bf16, and the GPU if one is visible."""
    import torch  # here: reading a record's machine (``label``) needs no torch

    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "native_bf16": cpu_has_fast_bf16()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def label(info: dict) -> str:
    """A machine's one-line name from a run's record (``describe``'s keys); ``not recorded`` for runs made
    before taskrel recorded the machine."""
    if info.get("gpu"):
        return f"{info['gpu']} (GPU)"
    if "cpu" not in info:
        return "not recorded"
    bf16 = "native bf16" if info.get("native_bf16") else "no native bf16"
    return f"{info['cpu']} ({info.get('cores', '?')} cores, {bf16})"
