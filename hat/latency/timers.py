"""Timing backends: wall clock on the CPU, CUDA events on a GPU."""
from __future__ import annotations

import time
from typing import Callable

from hat.errors import HatError


class CpuTimer:
    """``time.perf_counter`` around one call; torch's intra-op threads fixed by the collector."""

    device = "cpu"

    def time_ms(self, fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000.0


class CudaTimer:
    """CUDA events, synchronised before the clock is read."""

    device = "cuda"

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise HatError("backend 'cuda' needs a CUDA GPU, and torch sees none on this machine")
        self._torch = torch

    def time_ms(self, fn: Callable[[], object]) -> float:
        torch = self._torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return float(start.elapsed_time(end))


def make_timer(backend: str) -> CpuTimer | CudaTimer:
    if backend in ("torch", "onnxruntime"):
        return CpuTimer()
    if backend == "cuda":
        return CudaTimer()
    raise HatError(f"unknown backend '{backend}' (use torch, cuda or onnxruntime)")
