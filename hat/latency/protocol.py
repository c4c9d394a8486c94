"""The measurement protocol (HAT's, made robust) and the statistics of repeated timings."""
from __future__ import annotations

import datetime
import os
import platform
from dataclasses import asdict, dataclass

import numpy as np


# Upper bounds of the protocol's integers: src_len stays inside the models' 1024 positions.
LIMITS = {"src_len": 1000, "beam": 64, "vocab": 1 << 20, "warmup": 1000, "runs": 100000, "threads": 1024,
          "seed": 2**32 - 1}


@dataclass(frozen=True)
class Protocol:
    """How one latency is measured.

    A run is one encoder pass over ``src_len`` tokens (batch 1) and ``src_len`` incremental decoder
    steps over ``beam`` hypotheses, output projection included. ``warmup`` untimed runs, then
    ``runs`` timed ones; statistics drop ``trim`` of the samples at each end for the trimmed mean.
    """

    src_len: int = 30
    beam: int = 5
    vocab: int = 32768
    warmup: int = 5
    runs: int = 20
    trim: float = 0.1
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        from hat.errors import HatError

        for name, high in LIMITS.items():
            value = getattr(self, name)
            low = 0 if name in ("warmup", "seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise HatError(f"protocol: {name} must be an integer from {low} to {high}, got {value!r}")
        if isinstance(self.trim, bool) or not isinstance(self.trim, (int, float)) or not 0 <= self.trim < 0.5:
            raise HatError(f"protocol: warmup must be >= 0 and trim in [0, 0.5), got {self.warmup}, {self.trim}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TimingStats:
    """Statistics of repeated timings, in milliseconds."""

    median: float
    mean: float  # trimmed mean (HAT's statistic)
    std: float
    iqr: float
    n: int

    @classmethod
    def of(cls, samples_ms: list[float] | np.ndarray, trim: float) -> "TimingStats":
        x = np.sort(np.asarray(samples_ms, dtype=float))
        cut = int(len(x) * trim)
        kept = x[cut : len(x) - cut] if len(x) - 2 * cut > 0 else x
        q1, q3 = np.percentile(x, [25, 75])
        return cls(float(np.median(x)), float(kept.mean()), float(x.std()), float(q3 - q1), len(x))


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else platform)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(backend: str, threads: int) -> dict:
    """What a latency file records about where it was measured."""
    import torch

    info = {
        "backend": backend,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if backend == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    if backend == "onnxruntime":
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info


def default_device_name(backend: str, threads: int) -> str:
    """A file-system friendly name like ``intel-xeon-platinum-8375c_1t`` for ``latency_tables/``."""
    import re

    name = cpu_model()
    if backend == "cuda":
        import torch

        name = torch.cuda.get_device_name(0)
    slug = re.sub(r"\(r\)|\(tm\)|cpu|@.*$", "", name.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", slug).strip("-")
    suffix = {"torch": "", "cuda": "_cuda", "onnxruntime": "_ort"}[backend]
    return f"{slug}_{threads}t{suffix}"
