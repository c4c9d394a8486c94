"""The measurement protocol (HAT's, made robust) and the statistics of repeated timings."""
from __future__ import annotations

import datetime
import os
import platform
from dataclasses import asdict, dataclass

from hat.latency.measure import STATISTICS, TimingStats  # noqa: F401 - TimingStats re-exported

# Upper bounds of the protocol's integers: src_len stays inside the models' 1024 positions.
LIMITS = {"src_len": 1000, "beam": 64, "vocab": 1 << 20, "warmup": 1000, "runs": 100000, "threads": 1024,
          "seed": 2**32 - 1}


@dataclass(frozen=True)
class Protocol:
    """How one latency is measured.

    A run is one encoder pass over ``src_len`` tokens (batch 1) and ``src_len`` incremental decoder
    steps over ``beam`` hypotheses, output projection included. ``warmup`` untimed runs, then
    ``runs`` timed rounds, more (up to ``max_runs``) while the ``statistic`` still moves by more
    than ``settle`` (see :func:`hat.latency.measure.measure_interleaved`); ``trim`` is the share
    dropped at each end for the trimmed mean.
    """

    src_len: int = 30
    beam: int = 5
    vocab: int = 32768
    warmup: int = 5
    runs: int = 20
    trim: float = 0.1
    threads: int = 1
    seed: int = 0
    statistic: str = "p10"  # chosen by experiments/bench_measure.py (BENCHMARKS.md)
    max_runs: int = 0  # 0: three times runs
    settle: float = 0.01

    def __post_init__(self) -> None:
        from hat.errors import HatError

        for name, high in LIMITS.items():
            value = getattr(self, name)
            low = 0 if name in ("warmup", "seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise HatError(f"protocol: {name} must be an integer from {low} to {high}, got {value!r}")
        if isinstance(self.trim, bool) or not isinstance(self.trim, (int, float)) or not 0 <= self.trim < 0.5:
            raise HatError(f"protocol: trim must be in [0, 0.5), got {self.trim!r}")
        if self.statistic not in STATISTICS:
            raise HatError(f"protocol: statistic must be one of {', '.join(STATISTICS)}, got {self.statistic!r}")
        if isinstance(self.max_runs, bool) or not isinstance(self.max_runs, int) or not (
                self.max_runs == 0 or self.runs <= self.max_runs <= LIMITS["runs"]):
            raise HatError(f"protocol: max_runs must be 0 (three times runs) or an integer from runs ({self.runs}) "
                           f"to {LIMITS['runs']}, got {self.max_runs!r}")
        if isinstance(self.settle, bool) or not isinstance(self.settle, (int, float)) or not 0 < self.settle < 1:
            raise HatError(f"protocol: settle must be a fraction in (0, 1), got {self.settle!r}")

    @property
    def round_limit(self) -> int:
        """The most timed rounds one measurement may take."""
        return self.max_runs or 3 * self.runs

    def to_dict(self) -> dict:
        return asdict(self)


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


def device_info(backend: str, threads: int, precision: str = "fp32", provider: str | None = None) -> dict:
    """What a latency file records about where and on which runtime it was measured.

    Runs on the measuring device; for onnxruntime it imports neither torch nor anything else of ours.
    """
    info = {
        "backend": backend,
        "precision": precision,
        "provider": provider or ("CUDA" if backend == "cuda" else "CPU"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if backend in ("torch", "cuda"):
        import torch

        info["torch"] = torch.__version__
        if backend == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    if backend == "onnxruntime":
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info


def default_device_name(backend: str, threads: int, precision: str = "fp32") -> str:
    """A file-system friendly name like ``intel-xeon-platinum-8375c_1t`` for ``latency_tables/``."""
    import re

    name = cpu_model()
    if backend == "cuda":
        import torch

        name = torch.cuda.get_device_name(0)
    slug = re.sub(r"\(r\)|\(tm\)|cpu|@.*$", "", name.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", slug).strip("-")
    suffix = {"torch": "", "cuda": "_cuda", "onnxruntime": "_ort"}[backend]
    if precision != "fp32":
        suffix += f"-{precision}"
    return f"{slug}_{threads}t{suffix}"
