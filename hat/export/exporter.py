"""torch's dynamo ONNX exporter as every HAT export calls it: quiet, gradient-free, one op table.

``torch.onnx.export`` rebuilds its table of ATen -> ONNX translations (``ONNXRegistry.from_torchlib``)
on every call: about a second on this project's CPUs, a third of exporting one lookup-table piece.
Inside :func:`quiet_export` the table is built once per process and reused; the exported graphs are
byte-identical (``tests/test_export.py`` checks it). Where a torch version lacks that internal
hook, exports simply run as torch ships them.
"""
from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

_REGISTRIES: dict[tuple, Any] = {}


def _registry_class() -> Any | None:
    """torch's ONNX op registry class, if this torch has the classmethod HAT reuses."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        return None
    registry = getattr(_registration, "ONNXRegistry", None)
    if registry is None or not isinstance(inspect.getattr_static(registry, "from_torchlib", None), classmethod):
        return None
    return registry


@contextmanager
def reused_op_registry() -> Iterator[None]:
    """Within the block, ``ONNXRegistry.from_torchlib`` returns one table per (opset) per process."""
    registry = _registry_class()
    if registry is None:
        yield
        return
    original = inspect.getattr_static(registry, "from_torchlib")
    build = original.__func__

    def cached(cls: type, *args: Any, **kwargs: Any) -> Any:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _REGISTRIES:
            _REGISTRIES[key] = build(cls, *args, **kwargs)
        return _REGISTRIES[key]

    registry.from_torchlib = classmethod(cached)
    try:
        yield
    finally:
        registry.from_torchlib = original


@contextmanager
def quiet_export(reuse_registry: bool = True) -> Iterator[None]:
    """No gradients, no exporter warnings or log lines ("torchvision is not installed" and such)."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if reuse_registry:
                with reused_op_registry():
                    yield
            else:
                yield
    finally:
        exporter_log.setLevel(level)


def strip_node_metadata(model: Any) -> None:
    """Drop the exporter's per-node debugging metadata (source stack traces, fx names) in place."""
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
