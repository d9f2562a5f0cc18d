"""Numerical precision of the forward passes: ``auto``, ``fp32`` or ``bf16``.

bf16 runs the forward pass under ``torch.autocast``; master weights, the
optimizer state, losses and metrics stay fp32. ``auto`` is bf16 on CUDA and
fp32 on the CPU. (bf16 on CPUs with AVX512-BF16 or AMX is available as
``--precision bf16``; making it the CPU default belongs to the speed issue,
with its accuracy check at convergence.)
"""

from __future__ import annotations

import contextlib

import torch


def resolve_precision(device, precision: str = "auto") -> str:
    """``"bf16"`` or ``"fp32"`` for a device and a requested precision."""
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return precision


def autocast(device, precision: str = "auto"):
    """The autocast context of a device and precision (a no-op for fp32)."""
    device = torch.device(device)
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
