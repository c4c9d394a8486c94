"""Option types that refuse nonsense at parse time (NaN, zero workers, negative tolerances ...)."""
from __future__ import annotations

import argparse
import math
from typing import Callable


def _number(kind: type, *, low: float | None = None, high: float | None = None,
            low_inclusive: bool = True) -> Callable[[str], float | int]:
    """An argparse ``type`` for a finite ``kind`` (int or float) within [low, high] (or (low, high])."""
    bounds = []
    if low is not None:
        bounds.append(f"{'>=' if low_inclusive else '>'} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    need = f"{'an integer' if kind is int else 'a finite number'}{' ' + ' and '.join(bounds) if bounds else ''}"

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {need}, got {text!r}") from None
        if not math.isfinite(value) or (low is not None and (value < low if low_inclusive else value <= low)) \
                or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {need}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer from ``low`` (to ``high``)."""
    return _number(int, low=low, high=high)  # type: ignore[return-value]


def positive_float(high: float | None = None) -> Callable[[str], float]:
    """A finite number above 0 (up to ``high``)."""
    return _number(float, low=0, high=high, low_inclusive=False)  # type: ignore[return-value]


def float_at_least(low: float, high: float | None = None) -> Callable[[str], float]:
    """A finite number from ``low`` (to ``high``)."""
    return _number(float, low=low, high=high)  # type: ignore[return-value]


finite_float: Callable[[str], float] = _number(float)  # type: ignore[assignment]
