"""Write a search's results: configs per constraint, history CSV, summary JSON, PNG plots."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from hat.io import atomic_write_json, atomic_write_text
from hat.search.results import SearchResult


def best_config_path(out_dir: str | Path, constraint_ms: float) -> Path:
    return Path(out_dir) / f"best_{constraint_ms:g}ms.yaml"


def write_search_outputs(result: SearchResult, out_dir: str | Path, extra: dict[str, Any] | None = None,
                         runtime: dict[str, Any] | None = None, space: Any = None) -> dict[str, Any]:
    """Write configs, history, summary and plots; ``runtime`` (the predictor's, see
    :func:`hat.latency.runtime_info.runtime_of`) says what the milliseconds are. With the search
    ``space``, every reported model also gets its FLOPs as HAT counts them."""
    from hat.latency.runtime_info import describe_runtime
    from hat.search.objectives import flops

    count = flops(space).measure if space is not None else None

    def reported(candidate) -> dict[str, float]:
        values = dict(candidate.objectives)
        if count is not None and "flops" not in values:
            values["flops"] = count(candidate.config)
        return values

    out = Path(out_dir)
    unit = describe_runtime(runtime) if runtime else "the predictor's runtime"
    for item in result.results:
        text = item.best.config.to_yaml()
        values = "".join(f", {name} {value:g}" for name, value in reported(item.best).items())
        header = (f"# best SubTransformer under {item.constraint_ms:g} ms on {unit}: predicted "
                  f"{item.best.latency_ms:.2f} ms{values}, validation loss {item.best.loss:.4f}\n")
        atomic_write_text(best_config_path(out, item.constraint_ms), header + text)
    text = io.StringIO()
    objectives = [limit.name for limit in result.limits]
    writer = csv.DictWriter(text, fieldnames=["constraint_ms", "iteration", "archid", "latency_ms", *objectives, "loss",
                                              "config"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.history)
    atomic_write_text(out / "history.csv", text.getvalue())
    summary = {
        "latency_runtime": runtime, "latency_unit": unit,
        "evaluations": result.evaluations,
        "feasible_range_ms": list(result.feasible_range_ms),
        "limits": [limit.to_dict() for limit in result.limits],
        "results": [
            {
                "constraint_ms": item.constraint_ms, "archid": item.best.archid, "loss": item.best.loss,
                "predicted_latency_ms": item.best.latency_ms, **reported(item.best), "evaluations": item.evaluations,
                "config_file": best_config_path(out, item.constraint_ms).name, "config": item.best.config.to_dict(),
                "best_loss_per_iteration": item.best_loss_per_iteration,
            }
            for item in result.results
        ],
        "pareto_front": [{"archid": c.archid, "latency_ms": c.latency_ms, **reported(c), "loss": c.loss}
                         for c in result.pareto_front()],
        **(extra or {}),
    }
    atomic_write_json(out / "summary.json", summary)
    plot_search(result, out, unit)
    return summary


def plot_search(result: SearchResult, out: Path, unit: str = "the predictor's runtime") -> None:
    from hat.plots import pyplot

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for item in result.results:
        ax.plot(range(len(item.best_loss_per_iteration)), item.best_loss_per_iteration, marker=".",
                label=f"<= {item.constraint_ms:g} ms")
    ax.set_xlabel("iteration")
    ax.set_ylabel("best validation loss (inherited weights)")
    ax.set_title("evolutionary search")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "best_loss.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    evaluated = [c for c in result.candidates.values() if c.loss is not None]
    ax.scatter([c.latency_ms for c in evaluated], [c.loss for c in evaluated], s=6, alpha=0.3, color="gray",
               label="evaluated")
    front = result.pareto_front()
    ax.plot([c.latency_ms for c in front], [c.loss for c in front], "b-", lw=1.5, label="Pareto front")
    chosen: dict[str, tuple[Any, list[str]]] = {}  # one label per chosen config, naming every constraint it won
    for item in result.results:
        ax.axvline(item.constraint_ms, color="red", lw=0.8, ls="--")
        chosen.setdefault(item.best.config.archid, (item.best, []))[1].append(f"{item.constraint_ms:g}")
    for best, constraints in chosen.values():
        ax.scatter([best.latency_ms], [best.loss], marker="*", s=160, color="red", zorder=5)
        ax.annotate(f"≤ {' / '.join(constraints)} ms", (best.latency_ms, best.loss), textcoords="offset points",
                    xytext=(5, 5))
    ax.set_xlabel(f"predicted latency (ms, {unit})")
    ax.set_ylabel("validation loss")
    ax.set_title("loss vs latency (chosen configs starred)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=120)
    plt.close(fig)
