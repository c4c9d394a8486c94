"""Files HAT ships: search spaces and latency tables with fitted predictors.

In a checkout they live in ``search_spaces/`` and ``latency_tables/`` beside the package; an
installed wheel carries them inside it (``hat/_shipped``). Commands accept a shipped name
wherever they take such a file: ``--space wmt14_en_de``, ``--predictor intel-xeon-processor_1t/tiny``.
"""
from __future__ import annotations

from pathlib import Path

from hat.errors import HatError

PACKAGE = Path(__file__).resolve().parent


def shipped_dir(kind: str) -> Path:
    """``search_spaces`` or ``latency_tables``: the checkout's folder, else the installed copy."""
    for candidate in (PACKAGE.parent / kind, PACKAGE / "_shipped" / kind):
        if candidate.is_dir():
            return candidate
    return PACKAGE / "_shipped" / kind


def space_names() -> list[str]:
    return sorted(p.stem for p in shipped_dir("search_spaces").glob("*.yaml"))


def predictor_names() -> list[str]:
    root = shipped_dir("latency_tables")
    return sorted(str(p.parent.relative_to(root)) for p in root.glob("*/*/predictor.json"))


def _is_name(value: str | Path) -> bool:
    text = str(value)
    return not Path(text).exists() and not text.endswith((".yaml", ".yml", ".json")) and ".." not in text


def space_file(value: str | Path) -> Path:
    """A search space file given as a path or as the name of a shipped space."""
    if not _is_name(value):
        return Path(value)
    path = shipped_dir("search_spaces") / f"{value}.yaml"
    if not path.is_file():
        raise HatError(f"no such file, and no shipped space of that name (shipped: {', '.join(space_names())})",
                       value)
    return path


def predictor_file(value: str | Path) -> Path:
    """A predictor file given as a path or as ``DEVICE/SPACE`` of a shipped latency table."""
    if not _is_name(value):
        return Path(value)
    path = shipped_dir("latency_tables") / str(value) / "predictor.json"
    if not path.is_file():
        raise HatError(f"no such file, and no shipped predictor of that name (shipped: "
                       f"{', '.join(predictor_names())})", value)
    return path
