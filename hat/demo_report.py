"""REPORT.md and plots for ``hat demo``."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hat.io import atomic_write_text


def _bleu_latency_plot(models: list[dict], path: Path) -> None:
    from hat.plots import pyplot

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, marker in (("measured_ort_fp32_ms", "onnxruntime fp32", "o"), ("measured_ort_int8_ms", "onnxruntime int8", "s")):
        bleu_key = "bleu_fp32" if "fp32" in key else "bleu_int8"
        ax.scatter([m[key] for m in models], [m[bleu_key] for m in models], marker=marker, label=label)
        for m in models:
            ax.annotate(m["name"], (m[key], m[bleu_key]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("measured latency (ms, batch 1, beam 5, 30 tokens)")
    ax.set_ylabel("BLEU (test, beam 5)")
    ax.set_title("chosen SubTransformers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}%"


def _architecture(model_dir: str) -> str:
    """The exported model's config summary, safe inside a Markdown table cell."""
    from hat.export.model_dir import read_manifest
    from hat.space import SubTransformerConfig

    config = SubTransformerConfig.from_yaml(Path(model_dir) / read_manifest(model_dir)["config"])
    return f"`{config.summary()}`".replace("|", "\\|")


def _factor(model: dict) -> str:
    return "n/a" if model.get("machine_factor") is None else f"x{model['machine_factor']:.3f}"


def write_report(out: Path, stages: dict[str, Any], settings: dict[str, Any]) -> Path:
    out = Path(out)
    models = stages["evaluate"]["models"]
    _bleu_latency_plot(models, out / "bleu_vs_latency.png")
    shutil.copy(out / "search" / "pareto.png", out / "pareto.png")
    pred = stages["predictor"]
    noise = stages["profile"]["noise"]
    search = stages["search"]
    runtime = stages["evaluate"].get("runtime") or search.get("runtime", "onnxruntime")
    lines = [
        "# HAT demo report",
        "",
        "Everything below was produced by `hat demo` on this machine: a tiny SuperTransformer trained on the",
        f"embedded synthetic corpus, this CPU profiled on {runtime}, a latency predictor fitted, an evolutionary",
        f"search under {len(search['constraints'])} latency constraints, and the winners exported to ONNX and measured.",
        "",
        "## Stages",
        "",
        "| stage | result | seconds |",
        "| --- | --- | --- |",
        *[f"| {name} | {stage.get('summary', '')} | {stage['seconds']} |" for name, stage in stages.items() if name != "report"],
        "",
    ]
    lines += _predictor_lines(pred, noise)
    lines += _search_lines(search, runtime)
    lines += _model_lines(models, stages, runtime)
    lines += [
        "## Example translations (onnxruntime fp32, beam 5)",
        "",
    ]
    for m in models[:1]:
        for ex in m["examples"]:
            lines += [f"- source: `{ex['source']}`", f"  - {m['name']}: `{ex['translation']}`",
                      f"  - reference: `{ex['reference']}`"]
    lines += ["", f"Models are in `{out / 'models'}`; run one with "
              f"`hat translate --model {out / 'models' / models[0]['name']}`.", ""]
    path = out / "REPORT.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _predictor_lines(pred: dict[str, Any], noise: dict[str, Any]) -> list[str]:
    return [
        "## Latency predictor",
        "",
        f"Chosen model: **{pred['model']}** ({pred['folds']}-fold cross-validation on the training samples: the "
        f"simplest kind whose MAPE is within {100 * pred['tolerance']:.0f}% of the best).",
        "",
        "| held-out set | n | RMSE (ms) | MAPE | within ±5% | within ±10% | Kendall τ |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[f"| cross-validated training samples, {kind} | {m['n']} | {m['rmse_ms']:.3f} | {m['mape_pct']:.2f}% | "
          f"{100 * m['within_5pct']:.0f}% | {100 * m['within_10pct']:.0f}% | {m['kendall_tau']:.3f} |"
          for kind, m in pred["selection"].items()],
        f"| separate test SubTransformers, {pred['model']} | {pred['test']['n']} | {pred['test']['rmse_ms']:.3f} | "
        f"{pred['test']['mape_pct']:.2f}% | {100 * pred['test']['within_5pct']:.0f}% | "
        f"{100 * pred['test']['within_10pct']:.0f}% | {pred['test']['kendall_tau']:.3f} |",
        "",
        f"Measurement noise: the reference SubTransformer, re-timed in each of {noise['chunks']} chunks, measured "
        f"{noise['mean_ms']:.2f} ± {noise['std_ms']:.2f} ms (CV {100 * noise['cv']:.1f}%, max/min {noise['max_over_min']:.3f}); {noise.get('remeasured', 0)} "
        f"chunk(s) were measured again because the reference ran more than {100 * noise['steady_tolerance']:.0f}% "
        "slower than in the chunks before.",
        "",
        "![predicted vs measured](predicted_vs_measured.png)",
        "",
    ]


def _search_lines(search: dict[str, Any], runtime: str) -> list[str]:
    return [
        "## Search",
        "",
        f"Feasible predicted range {search['feasible_range_ms'][0]:.1f}–{search['feasible_range_ms'][1]:.1f} ms; "
        f"constraints {', '.join(f'{c:g}' for c in search['constraints'])} ms on {runtime}; {search['evaluations']} fitness "
        "evaluations in total (fitness: validation loss with inherited weights).",
        "",
        *_round_lines(search),
        "![Pareto front](pareto.png)",
        "",
    ]


def _round_lines(search: dict[str, Any]) -> list[str]:
    """How the measured winners corrected the predictor, round by round (older stage records have none)."""
    rounds = search.get("rounds")
    if not rounds:
        return []
    test = search["predictor_test"]
    return [
        "After each search the best candidates of each constraint were measured on the target, as profiling "
        "measures, and compared with their prediction at the predictor's machine speed (a search can favour the "
        "models its predictor under-estimates) and added to the predictor's data. "
        + ("While a constraint's chosen model was off by more than the tolerance, the predictor was refitted and "
           "the search re-run under the same constraints." if len(rounds) > 1 else
           "The demo does not refit on them by default (`winner_rounds` 0; `hat search --measure-winners` does)."),
        "",
        "| round | candidates measured | largest error among them | error of each constraint's chosen model |",
        "| --- | --- | --- | --- |",
        *[f"| {r['round']} | {r['measured']} | {100 * r['worst_error']:+.1f}% | "
          f"{', '.join(f'{100 * e:+.1f}%' for e in r['best_errors'])} |" for r in rounds],
        "",
        f"The final predictor on the separate test SubTransformers: MAPE {test['mape_pct']:.2f}%, within ±10% "
        f"{100 * test['within_10pct']:.0f}%, Kendall τ {test['kendall_tau']:.3f}.",
        "",
    ]


def _spread(model: dict[str, Any]) -> str:
    """The lowest and highest error (at the machine's speed) of a model's verify passes."""
    errors = model.get("pass_errors") or []
    return f"{100 * min(errors):+.1f}% to {100 * max(errors):+.1f}%" if len(errors) > 1 else "n/a"


def _model_lines(models: list[dict[str, Any]], stages: dict[str, Any], runtime: str) -> list[str]:
    return [
        "## Chosen models",
        "",
        f"Latency: batch 1, beam 5, 30 source tokens and 30 decoder steps of the numpy beam loop `hat translate` runs. "
        f"Constraints, *predicted* and *measured* are in **{runtime}**, the runtime the models deploy on "
        "(measured by `hat verify` with the predictor's protocol, several passes each beside the reference model: the "
        "median pass is shown, the range of the passes' errors beside it); the other columns measure the same models on "
        "the other runtimes for comparison. BLEU: sacreBLEU on the 500-sentence synthetic test set, beam 5, "
        "weights inherited from the SuperTransformer (no retraining).",
        "",
        "| model | params | MFLOPs | predicted (ms) | measured (ms) | error | machine speed | error at that speed | over the passes | onnxruntime fp32 (ms) | onnxruntime int8 (ms) | PyTorch eager (ms) | BLEU fp32 | BLEU int8 | architecture |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[f"| {m['name']} | {m['parameters']:,} | {m['flops'] / 1e6:.1f} | {m['predicted_ms']:.2f} | {m['measured_ms']:.2f} | "
          f"{100 * m['relative_error']:+.1f}% | {_factor(m)} | {_percent(m.get('normalised_error'))} | {_spread(m)} | "
          f"{m['measured_ort_fp32_ms']:.2f} | {m['measured_ort_int8_ms']:.2f} | {m['measured_torch_ms']:.2f} | "
          f"{m['bleu_fp32']:.1f} | {m['bleu_int8']:.1f} | {_architecture(stages['export']['models'][m['name']])} |"
          for m in models],
        "",
        "*MFLOPs*: as HAT counts them, 2 x the multiply-accumulates of one teacher-forced pass (embeddings and output",
        "projection excluded; `hat space check --flops`).",
        "",
        "*Machine speed*: the collector's reference model, timed interleaved with each model, against its median time",
        "during profiling (x1.10 = the machine ran 10% slower than when the predictor's data was taken). *Error at",
        "that speed* compares the measurement with the prediction scaled by that factor: the predictor's own error,",
        "with the shared machine's drift taken out. *Error* is the raw comparison.",
        "",
        "![BLEU vs latency](bleu_vs_latency.png)",
        "",
    ]
