"""PNG plots of results people compare (matplotlib, headless)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib's pyplot (headless), or None with a warning when the 'plots' extra is missing:
    a missing plot never costs the results it would have drawn."""
    try:
        import matplotlib
    except ImportError:
        logging.getLogger("hat").warning("matplotlib is not installed, so no plots are drawn: "
                                         "pip install 'hat-nas[plots]'")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def predicted_vs_measured(predicted: np.ndarray, measured: np.ndarray, path: str | Path, title: str) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(measured, predicted, s=10, alpha=0.6)
    lo, hi = float(min(measured.min(), predicted.min())), float(max(measured.max(), predicted.max()))
    xs = np.array([lo, hi])
    ax.plot(xs, xs, "k-", lw=1, label="exact")
    ax.fill_between(xs, 0.9 * xs, 1.1 * xs, color="gray", alpha=0.2, label="±10%")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
