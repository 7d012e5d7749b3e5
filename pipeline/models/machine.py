"""The CPU a figure was measured on: its model name and the instruction-set extensions that
decide which kernels torch and oneDNN run.

Light (no torch): the benchmarks' machine header reads it without importing torch, and the
precision calibration (:mod:`pipeline.models.calibration`) keys its cache by it.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Final

#: The instruction-set extensions that decide which kernels torch and oneDNN run: AVX2 only,
#: AVX-512, bf16 and int8 dot products (VNNI), and AMX tiles. A figure means little without them.
ISA_FLAGS: Final[tuple[str, ...]] = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
)


def cpu_model_and_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    """The first CPU's model name and flags from ``cpuinfo``; ``platform.processor()`` without it."""
    model, flags = "", set[str]()
    try:
        with cpuinfo.open() as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or "unknown CPU", flags


__all__ = ["ISA_FLAGS", "cpu_model_and_flags"]
