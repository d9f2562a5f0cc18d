"""Numerical precision of the forward passes: ``auto``, ``fp32`` or ``bf16``.

bf16 runs the forward pass under ``torch.autocast``; master weights, the
optimizer state, losses and metrics stay fp32. ``auto`` is bf16 on CUDA and on
CPUs with native bf16 arithmetic (the ``avx512_bf16`` or ``amx_bf16`` flag in
``/proc/cpuinfo``), fp32 on other CPUs, where bf16 is emulated and slower.
The precision a run used is recorded in its ``config.json`` (``resolved``).
Measured on an AVX512-BF16 CPU: a MiniLM training step 2.2x faster than fp32
(BENCHMARKS.md); accuracy at convergence: ``experiments/precision-check.yaml``.
On an AVX2-only CPU a bf16 step is about 20x slower than fp32 (BENCHMARKS.md),
so training asked for bf16 explicitly there is refused (``check_trainable``):
a study file that states ``precision: bf16`` is trained on machines that do
it natively and skipped, with that reason, elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

from .config import ConfigError

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU does bf16 arithmetic natively (Linux ``/proc/cpuinfo`` flags; False where unknown)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return any(f in flags for f in BF16_CPU_FLAGS)


def _device_type(device) -> str:
    """``cpu``, ``cuda``, ...: a device's type, from a ``torch.device`` or its name, without importing torch
    (reading a run's precision, as ``taskrel status`` does, needs no trainer)."""
    return device.type if hasattr(device, "type") else str(device).partition(":")[0]


def resolve_precision(device, precision: str = "auto") -> str:
    """``"bf16"`` or ``"fp32"`` for a device and a requested precision."""
    device_type = _device_type(device)
    if precision == "auto":
        return "bf16" if device_type == "cuda" or (device_type == "cpu" and cpu_has_fast_bf16()) else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return precision


class PrecisionUnavailable(ConfigError):
    pass


def check_trainable(device, precision: str) -> None:
    """Refuse to train at a precision this machine only emulates (bf16 asked for explicitly on a CPU without
    native bf16), where a run would take about 20 times as long as in fp32 and a study's budget would mean
    nothing; ``auto`` always trains (it resolves to fp32 there)."""
    if precision == "bf16" and _device_type(device) == "cpu" and not cpu_has_fast_bf16():
        raise PrecisionUnavailable(
            "precision bf16 was asked for, and this CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag in "
            "/proc/cpuinfo): a training step would take about 20 times as long as in fp32 (BENCHMARKS.md). Train "
            "it on a machine with native bf16 or a GPU, or ask for fp32 (a different setting: runs at other "
            "precisions do not compare)"
        )


class PrecisionChanged(ConfigError):
    pass


def check_resumable(recorded: str | None, device, precision: str, where) -> None:
    """Refuse to resume a run whose ``auto`` precision resolved, where it started (``recorded``, from its
    ``config.json``), to another precision than this machine resolves it to: the run would go on at another
    precision than the one its first epochs and its checkpoint were trained at. Runs recorded without a
    resolved precision are not checked."""
    here = resolve_precision(device, precision)
    if recorded and recorded != here:
        raise PrecisionChanged(
            f"{where}: this run started in {recorded} (precision {precision}) and would go on in {here} on this "
            f"machine, mixing two precisions in one run: nothing trained. Resume it on a machine like the one it "
            f"started on (bf16: a CPU with the avx512_bf16 or amx_bf16 flag, or a GPU), or remove the folder to "
            f"train it again from the start"
        )


def autocast(device, precision: str = "auto"):
    """The autocast context of a device and precision (a no-op for fp32)."""
    import torch

    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(_device_type(device), dtype=torch.bfloat16)
    return contextlib.nullcontext()
