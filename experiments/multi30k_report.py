"""RESULTS.md and the plot of the Multi30k benchmark (experiments/multi30k.py), from its measured rows.

A row: ``model`` (name), ``track`` ("fine-tuned" or "scratch"), ``role`` ("searched", "largest",
"smallest", "stock-arch" or "fairseq"), ``bleu`` (test set -> sacreBLEU), ``latency_ms`` and
``passes_ms`` (onnxruntime, median pass and every pass), ``parameters``, ``config`` (summary),
``targets`` (what it learned from: "references" when absent, or a kind of distillation).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hat.io import atomic_write_text

SPEEDUP = 3.0  # the goal: >= 3x faster than the largest ...
MAX_LOSS = 0.5  # ... at <= 0.5 BLEU loss on each test set
STOCK_TOLERANCE = 0.3  # HAT's stock architecture vs fairseq's transformer
SIMILAR_LATENCY = 1.1  # "similar or higher" latency: at least the model's / 1.1
REFERENCES = "references"  # a row's ``targets`` when it learned from the training set's own targets


def combine_passes(passes: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One latency per workload from several timing passes (``measure_interleaved`` results): the
    median pass (encoder + decoder trimmed means; the lower middle one for an even count), so one
    slow or fast spell cannot set it. The per-pass totals are kept in ``passes_ms``."""
    combined = {}
    for name in passes[0]:
        totals = [p[name]["encoder"].mean + p[name]["decoder"].mean for p in passes]
        middle = sorted(range(len(passes)), key=lambda i: totals[i])[(len(passes) - 1) // 2]
        chosen = passes[middle][name]
        combined[name] = {"latency_ms": totals[middle], "encoder_ms": chosen["encoder"].mean,
                          "decoder_ms": chosen["decoder"].mean, "decoder_iqr_ms": chosen["decoder"].iqr,
                          "passes_ms": totals}
    return combined


def speedup_range(base: dict, row: dict) -> str:
    """' (per pass 2.55-2.70x)': the spread of base/row latency over the timing passes, when recorded."""
    if not (base.get("passes_ms") and row.get("passes_ms")) or len(base["passes_ms"]) != len(row["passes_ms"]):
        return ""
    ratios = [b / r for b, r in zip(base["passes_ms"], row["passes_ms"])]
    return f" (per pass {min(ratios):.2f}-{max(ratios):.2f}x)"


def find(rows: list[dict], role: str, track: str | None = None) -> dict | None:
    return next((r for r in rows if r["role"] == role and (track is None or r["track"] == track)), None)


def bleu_diffs(row: dict, base: dict) -> dict[str, float]:
    """Test set -> BLEU difference, to the 0.01 BLEU is reported in (so a verdict matches the text)."""
    return {name: round(row["bleu"][name] - base["bleu"][name], 2) for name in base["bleu"]}


def bleu_text(row: dict, base: dict) -> str:
    diffs = bleu_diffs(row, base)
    return (" / ".join(f"{row['bleu'][n]:.2f}" for n in diffs) + " vs " + " / ".join(f"{base['bleu'][n]:.2f}" for n in diffs)
            + " (" + ", ".join(f"{d:+.2f}" for d in diffs.values()) + ")")


def track_goal(rows: list[dict], track: str) -> str:
    """>= SPEEDUP x faster than the track's largest at <= MAX_LOSS BLEU loss on every test set; the
    searched model of the track with the smallest worst-case loss among those fast enough."""
    base = find(rows, "largest", track)
    head = f"Goal, {track} track (>= {SPEEDUP:g}x faster than 'largest ({track})' at <= {MAX_LOSS} BLEU loss on each test set)"
    if base is None:
        return f"{head}: no largest model on this track."
    fast = [r for r in rows if r["track"] == track and r["role"] == "searched"
            and base["latency_ms"] / r["latency_ms"] >= SPEEDUP]
    if not fast:
        return f"{head}: not met, no searched model is >= {SPEEDUP:g}x faster."
    best = max(fast, key=lambda r: min(bleu_diffs(r, base).values()))
    verdict = "met" if min(bleu_diffs(best, base).values()) >= -MAX_LOSS else "not met"
    return (f"{head}: '{best['model']}' at {base['latency_ms'] / best['latency_ms']:.2f}x{speedup_range(base, best)}, "
            f"BLEU {bleu_text(best, base)}: {verdict}.")


def stock_goal(rows: list[dict]) -> str:
    """HAT's from-scratch stock architecture within STOCK_TOLERANCE BLEU of fairseq's transformer on every test set."""
    hat, fairseq = find(rows, "stock-arch"), find(rows, "fairseq")
    head = f"Goal, stock architecture (HAT within {STOCK_TOLERANCE} BLEU of fairseq's transformer on each test set)"
    if hat is None or fairseq is None:
        return f"{head}: not measured."
    verdict = "met" if all(abs(d) <= STOCK_TOLERANCE for d in bleu_diffs(hat, fairseq).values()) else "not met"
    return f"{head}: BLEU {bleu_text(hat, fairseq)}: {verdict}."


def mean_bleu(row: dict) -> float:
    return sum(row["bleu"].values()) / len(row["bleu"])


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows no other row beats on both latency and mean BLEU (ties kept)."""
    def dominated(r: dict) -> bool:
        return any(o["latency_ms"] <= r["latency_ms"] and mean_bleu(o) >= mean_bleu(r)
                   and (o["latency_ms"] < r["latency_ms"] or mean_bleu(o) > mean_bleu(r)) for o in rows)
    return sorted((r for r in rows if not dominated(r)), key=lambda r: r["latency_ms"])


def pareto_goal(rows: list[dict]) -> str:
    """Every searched model on the searched models' front beats fairseq's transformer on every test set
    when the transformer's latency is similar or higher (>= the model's / SIMILAR_LATENCY)."""
    stock = find(rows, "fairseq")
    front = pareto_front([r for r in rows if r["role"] == "searched"])
    head = "Goal, Pareto front (every searched model on it beats fairseq's transformer of similar or higher latency)"
    if stock is None or not front:
        return f"{head}: not measured."
    compared = [r for r in front if stock["latency_ms"] >= r["latency_ms"] / SIMILAR_LATENCY]
    losers = [r["model"] for r in compared if min(bleu_diffs(r, stock).values()) <= 0]
    names = ", ".join(f"'{r['model']}' ({min(bleu_diffs(r, stock).values()):+.2f} worst set)" for r in compared)
    return f"{head}: {names or 'none comparable'}: {'not met (' + ', '.join(losers) + ')' if losers else 'met'}."


def distillation_lines(rows: list[dict]) -> list[str]:
    """For every distilled model ('23.2ms (scratch, seq-distilled)'), its BLEU against the same model
    trained on the references in the same track ('23.2ms (scratch)'), test set by test set and on average."""
    lines = []
    for r in rows:
        if r.get("targets", REFERENCES) == REFERENCES:
            continue
        name = f"{r['model'].split(' (')[0]} ({r['track']})"
        base = next((b for b in rows if b["model"] == name and b.get("targets", REFERENCES) == REFERENCES), None)
        if base is None:
            continue
        wins = sum(d > 0 for d in bleu_diffs(r, base).values())
        lines.append(f"Distillation, {r['track']} track, {r['targets']}: '{r['model']}' against '{base['model']}', "
                     f"BLEU {bleu_text(r, base)}, mean {mean_bleu(r) - mean_bleu(base):+.2f}: higher on {wins} of "
                     f"{len(r['bleu'])} test sets.")
    return lines


def table(rows: list[dict], test_sets: tuple[str, ...]) -> list[str]:
    largest = find(rows, "largest")
    lines = ["| model | track | " + " | ".join(f"BLEU {name}" for name in test_sets)
             + " | onnxruntime latency (ms) | faster than largest | parameters | architecture |",
             "| --- " * (len(test_sets) + 6) + "|"]
    for r in rows:
        speedup = f"{largest['latency_ms'] / r['latency_ms']:.2f}x{speedup_range(largest, r)}" if largest else "n/a"
        params = f"{r['parameters']:,}" if r.get("parameters") else "n/a"
        architecture = r.get("config", "").replace("|", "\\|")  # a config summary has a '|' between encoder and decoder
        bleu = " | ".join(f"{r['bleu'][name]:.2f}" for name in test_sets)
        lines.append(f"| {r['model']} | {r['track']} | {bleu} | {r['latency_ms']:.1f} | {speedup} | {params} | {architecture} |")
    return lines


def write_report(rows: list[dict], out: Path, test_sets: tuple[str, ...], threads: int) -> str:
    """OUT/RESULTS.md (table and the three goals) and OUT/bleu_vs_latency.png; returns the text."""
    lines = table(rows, test_sets)
    lines += ["", track_goal(rows, "fine-tuned"), "", track_goal(rows, "scratch"), "", stock_goal(rows), "",
              pareto_goal(rows)]
    for line in distillation_lines(rows):
        lines += ["", line]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    plot(rows, out / "bleu_vs_latency.png", test_sets, threads)
    return text


MARKERS = {("searched", "fine-tuned"): "*", ("searched", "scratch"): "P"}
DISTILLED_MARKERS = {"word-level distillation": "v", "sequence-level distillation": "D"}


def marker(row: dict) -> str:
    """The plot's marker: searched models by track, distilled ones by kind, baselines 'o'."""
    if row["role"] == "searched" and row.get("targets", REFERENCES) in DISTILLED_MARKERS:
        return DISTILLED_MARKERS[row["targets"]]
    return MARKERS.get((row["role"], row["track"]), "o")


def plot(rows: list[dict], path: Path, test_sets: tuple[str, ...], threads: int) -> None:
    """BLEU against deployed latency, one panel per test set."""
    from hat.plots import pyplot

    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, len(test_sets), figsize=(6 * len(test_sets), 5), sharex=True)
    for ax, name in zip(axes, test_sets):
        points = [dict(r, score=r["bleu"][name]) for r in rows]
        boxes: list[tuple[float, float, float, float]] = []
        for r in sorted(points, key=lambda r: (r["latency_ms"], r["score"])):
            shape = marker(r)
            ax.scatter(r["latency_ms"], r["score"], marker=shape, s=70 if shape != "o" else 30,
                       color="tab:blue" if r["track"] == "fine-tuned" else "tab:orange")
            ax.annotate(r["model"], (r["latency_ms"], r["score"]), fontsize=6,
                        xytext=(4, label_offset(r, points, boxes)), textcoords="offset points")
        ax.set_xlabel(f"onnxruntime latency (ms, batch 1, beam 5, 30 tokens, {threads} thread(s))")
        ax.set_ylabel(f"BLEU ({name})")
        ax.set_title(name)
    fig.suptitle("Multi30k En-De: searched SubTransformers (* fine-tuned, P scratch; distilled: v word-level, "
                 "D sequence-level) and baselines (o); blue: fine-tuned track, orange: from scratch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def label_offset(row: dict, points: list[dict], boxes: list[tuple[float, float, float, float]]) -> int:
    """Vertical offset (points) for ``row``'s label that overlaps the fewest labels placed so far
    (their boxes, appended to ``boxes``). Positions are mapped to an axes of ~380 x 300 points;
    a point's height is its ``score``."""
    xs, ys = [r["latency_ms"] for r in points], [r["score"] for r in points]
    scale_x = 380 / max(max(xs) - min(xs), 1e-9)
    scale_y = 300 / max(max(ys) - min(ys), 1e-9)
    x, y = (row["latency_ms"] - min(xs)) * scale_x + 4, (row["score"] - min(ys)) * scale_y
    width = 3.0 * len(row["model"])

    def overlap(box: tuple[float, float, float, float]) -> float:
        return sum(max(0.0, min(box[2], b[2]) - max(box[0], b[0])) * max(0.0, min(box[3], b[3]) - max(box[1], b[1]))
                   for b in boxes)

    candidates = [(x, y + dy, x + width, y + dy + 6, dy) for dy in (3, -9, 11, -17, 19, -25)]
    best = min(candidates, key=lambda c: overlap(c[:4]))
    boxes.append(best[:4])
    return best[4]
