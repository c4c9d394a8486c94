"""What a latency figure was measured on (runtime, precision, provider, threads), read from a file's info."""
from __future__ import annotations

from typing import Any


def runtime_of(info: dict[str, Any]) -> dict[str, Any]:
    """What a predictor's (or dataset's) milliseconds were measured on; older files were torch fp32."""
    device = info.get("device") if isinstance(info.get("device"), dict) else {}
    protocol = info.get("protocol") if isinstance(info.get("protocol"), dict) else {}
    backend = device.get("backend", "torch")
    return {"backend": backend, "precision": device.get("precision", "fp32"),
            "provider": device.get("provider", "CUDA" if backend == "cuda" else "CPU"),
            "threads": device.get("threads", protocol.get("threads")), "vocab": protocol.get("vocab"),
            "src_len": protocol.get("src_len"), "beam": protocol.get("beam"),
            "statistic": protocol.get("statistic", "mean")}


def execution_provider(runtime: dict[str, Any]) -> str:
    """onnxruntime's name of the provider a runtime record names (older records say ``CPU``)."""
    provider = runtime["provider"]
    return provider if provider.endswith("ExecutionProvider") else f"{provider}ExecutionProvider"


def describe_runtime(runtime: dict[str, Any]) -> str:
    """``onnxruntime int8, 1 thread`` and the like, for reports."""
    threads = runtime.get("threads")
    name = {"torch": "PyTorch eager", "cuda": "PyTorch CUDA"}.get(runtime["backend"], runtime["backend"])
    precision = "" if runtime["backend"] in ("torch", "cuda") else f" {runtime['precision']}"
    provider = f" ({runtime['provider']})" if runtime["backend"] == "onnxruntime" and runtime["provider"] not in ("CPU", "CPUExecutionProvider") else ""
    return f"{name}{precision}{provider}" + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else "")
