from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("fairseq")

from hat.errors import HatError  # noqa: E402
from hat.export.model_dir import read_manifest  # noqa: E402
from hat.export.runtime import OnnxRuntimeModel, TorchModel, Translator  # noqa: E402
from tests.conftest import ROOT, SPACES  # noqa: E402


def raw_test_sentences(data_bin: Path, n: int = 12) -> list[str]:
    return (data_bin.parent / "raw" / "test.en").read_text().splitlines()[:n]


def test_model_directory_is_self_contained(exported, trained):
    from safetensors import safe_open

    from hat.checkpoints import file_sha256

    manifest = read_manifest(exported)
    assert manifest["source_checkpoint"]["sha256"] == file_sha256(trained["last"])
    with safe_open(str(exported / "weights.safetensors"), "pt") as weights:
        total = sum(np.prod(weights.get_slice(k).get_shape()) for k in weights.keys())
    assert total == manifest["parameters"]  # the SubTransformer's weights only, not the super weights
    for name in ("config.yaml", "dict.src.txt", "dict.tgt.txt", "spm.src.model", "encoder.onnx", "decoder_step.int8.onnx"):
        assert (exported / name).is_file()


def test_onnxruntime_matches_torch_logits_and_translations(exported, data_bin):
    torch_model, ort_model = TorchModel(exported), OnnxRuntimeModel.from_model_dir(exported)
    translator_torch, translator_ort = Translator(exported, "torch"), Translator(exported, "onnxruntime")
    for sentence in raw_test_sentences(data_bin):
        ids = np.array([translator_torch.encode_text(sentence)])
        state_t, state_o = torch_model.encode(ids), ort_model.encode(ids)
        tokens = np.array([[2]])
        for step in range(4):
            lt, lo = torch_model.step(tokens, step, state_t), ort_model.step(tokens, step, state_o)
            assert np.abs(lt - lo).max() <= 1e-4
            tokens = np.array([[int(lt.argmax())]])
        for beam in (1, 4):
            assert translator_ort.translate(sentence, beam=beam) == translator_torch.translate(sentence, beam=beam)


def test_int8_model_is_smaller_and_translates(exported, data_bin):
    fp32 = sum((exported / n).stat().st_size for n in ("encoder.onnx", "decoder_step.onnx")) + sum(
        p.stat().st_size for p in exported.glob("*.onnx.data"))
    int8 = sum((exported / n).stat().st_size for n in ("encoder.int8.onnx", "decoder_step.int8.onnx"))
    assert fp32 / int8 > 3.3, (fp32, int8)
    sentences = raw_test_sentences(data_bin, 12)
    int8_out = [Translator(exported, "onnxruntime", "int8").translate(s, beam=2) for s in sentences]
    fp32_out = [Translator(exported, "onnxruntime", "fp32").translate(s, beam=2) for s in sentences]
    assert all(int8_out) and len(set(int8_out)) > 1
    # quantization moves a few scores, not the translations: nearly all equal fp32's word for word
    assert sum(a == b for a, b in zip(int8_out, fp32_out)) >= 10, list(zip(int8_out, fp32_out))


def test_translate_cli_with_onnxruntime_never_imports_torch(exported, data_bin):
    # A device with only onnxruntime: block torch and fairseq imports entirely.
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['fairseq'] = None\n"
        "from hat.cli import main\n"
        f"sys.exit(main(['translate', '--model', {str(exported)!r}, '--beam', '2']))\n"
    )
    text = "\n".join(raw_test_sentences(data_bin, 3)) + "\n"
    proc = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert len(proc.stdout.strip().splitlines()) == 3


def test_verify_reports_and_exit_code(exported, tmp_path, capsys):
    from hat.cli import main
    from hat.latency import LatencyDataset, LatencyPredictor
    from hat.latency.features import hat_features
    from hat.space import SearchSpace

    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    configs = [space.sample(seed=i) for i in range(30)]
    features = np.array([hat_features(c) for c in configs])
    total = features[:, 5] * 2.0 + 1.0
    meta = {"space": space.name, "space_fingerprint": space.fingerprint,
            "protocol": {"src_len": 6, "beam": 2, "vocab": 100, "warmup": 1, "runs": 3, "trim": 0.1, "threads": 1, "seed": 0},
            "device": {"backend": "onnxruntime"}}
    predictor = tmp_path / "p.json"
    LatencyPredictor("linear").fit(LatencyDataset(features, 0.1 * total, 0.9 * total, configs, meta)).save(predictor)
    assert main(["verify", "--model", str(exported), "--predictor", str(predictor), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["measured_ms"] > 0 and report["predicted_ms"] > 0 and report["protocol"]["src_len"] == 6
    assert report["relative_error"] == pytest.approx((report["predicted_ms"] - report["measured_ms"]) / report["measured_ms"])
    assert main(["verify", "--model", str(exported), "--predictor", str(predictor), "--constraint", "0.001"]) == 1
    assert "EXCEEDS" in capsys.readouterr().out
    assert main(["verify", "--model", str(exported), "--predictor", str(predictor), "--constraint", "100000"]) == 0
    # the predictor's milliseconds are onnxruntime fp32: measuring another runtime is refused unless asked for
    capsys.readouterr()
    assert main(["verify", "--model", str(exported), "--predictor", str(predictor), "--backend", "torch"]) == 2
    assert "measured on onnxruntime fp32, not torch fp32" in capsys.readouterr().err
    assert main(["verify", "--model", str(exported), "--predictor", str(predictor), "--precision", "int8",
                 "--allow-mismatch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "int8"


def test_verify_gauges_the_machine_with_the_collectors_reference_model(exported, tmp_path):
    from hat.export.verify import verify_model
    from hat.latency import LatencyCollector, LatencyPredictor, Protocol
    from hat.space import SearchSpace

    space = SearchSpace.from_yaml(SPACES / "tiny.yaml")
    collector = LatencyCollector(space, Protocol(src_len=6, beam=2, vocab=100, warmup=1, runs=3), tmp_path / "lat",
                                 chunk_size=4, progress=False)
    data = collector.collect_dataset(8)
    assert data.meta["reference"]["config"] == space.smallest().to_dict(include_space=False)
    LatencyPredictor("linear").fit(data).save(tmp_path / "p.json")
    reference = LatencyPredictor.load(tmp_path / "p.json").info["reference"]
    times = sorted(float(r["reference_ms"]) for r in data.rows)
    assert reference["total_ms"] == pytest.approx(float(np.median(times))) and reference["rows"] == 8
    report = verify_model(exported, tmp_path / "p.json", backend="torch")
    assert report["reference_profiled_ms"] == pytest.approx(reference["total_ms"])
    assert report["machine_factor"] == pytest.approx(report["reference_now_ms"] / reference["total_ms"])
    assert report["normalised_error"] == pytest.approx(
        (report["predicted_ms"] * report["machine_factor"] - report["measured_ms"]) / report["measured_ms"])
    assert "passes" not in report
    several = verify_model(exported, tmp_path / "p.json", backend="torch", passes=3)
    errors = sorted(one["normalised_error"] for one in several["passes"])
    assert len(errors) == 3 and several["normalised_error"] == errors[1]  # the median pass is the one reported
    middle = next(one for one in several["passes"] if one["normalised_error"] == errors[1])
    assert several["measured_ms"] == middle["measured_ms"] and several["machine_factor"] == middle["machine_factor"]
    broken = json.loads((tmp_path / "p.json").read_text())
    del broken["info"]["reference"]["dims"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(HatError, match="broken.json.*reference model entry is corrupt"):
        verify_model(exported, tmp_path / "broken.json", backend="torch")


def test_bad_model_directories(exported, tmp_path):
    import shutil

    with pytest.raises(HatError, match="no manifest.json"):
        read_manifest(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "dict.tgt.txt").unlink()
    with pytest.raises(HatError, match="missing dict.tgt.txt"):
        Translator(broken)
    other = tmp_path / "other"
    shutil.copytree(exported, other)
    config = (other / "config.yaml").read_text()
    (other / "config.yaml").write_text(config.replace("decoder_embed_dim: 64", "decoder_embed_dim: 48")
                                       .replace("decoder_embed_dim: 48", "decoder_embed_dim: 64") if "decoder_embed_dim: 48" in config
                                       else config.replace("decoder_embed_dim: 64", "decoder_embed_dim: 48"))
    with pytest.raises(HatError, match="config.yaml was changed after export"):
        TorchModel(other)
    shutil.rmtree(other)
    shutil.copytree(exported, other)
    (other / "dict.src.txt").write_text("a 1\nb 2\n")
    with pytest.raises(HatError, match="dict.src.txt was changed after export"):
        Translator(other, "onnxruntime")


def test_int8_decoder_keeps_one_copy_of_the_tied_table(exported):
    """The lookup reads the int8 output projection; no second (vocab, dim) table is stored."""
    import onnx

    model = onnx.load(str(exported / "decoder_step.int8.onnx"))
    shapes = [tuple(t.dims) for t in model.graph.initializer if len(t.dims) == 2]
    vocab = read_manifest(exported)["dims"]["tgt_vocab_size"]
    projection = [s for s in shapes if s[1] == vocab]
    assert len(projection) == 1, shapes
    assert (vocab, projection[0][0]) not in shapes, shapes
    assert any(n.op_type == "Gather" and n.input[0].endswith("_quantized") for n in model.graph.node)


def test_backends_treat_a_line_longer_than_the_positions_alike(exported, caplog):
    """A line past the model's positions is truncated with a warning by both backends, not an IndexError."""
    words = " ".join(["the dog sees a cat ."] * 250)
    torch_out = Translator(exported, "torch").translate(words, beam=2)
    ort_out = Translator(exported, "onnxruntime").translate(words, beam=2)
    assert torch_out == ort_out
    assert caplog.text.count("truncated to the model's") == 2


def test_graphs_composed_from_pieces_equal_the_exported_ones(exported, data_bin, tmp_path):
    """The collector times graphs chained from per-shape pieces; with the model's own weights in the
    pieces they compute what ``hat export``'s graphs compute."""
    import onnx

    from hat.export.compose import compose_model
    from hat.export.pieces import export_piece, model_pieces, piece_keys

    model = TorchModel(exported).model
    pieces = model_pieces(model)
    keys = piece_keys(model.config)
    loaded: dict = {}

    def instance(name: str, io: tuple, key: tuple) -> tuple:
        export_piece(*io, tmp_path / f"{name}.onnx")
        loaded[name] = onnx.load(str(tmp_path / f"{name}.onnx"))
        return (name, *key[1:])  # the composer reads k (the last field) of cross_kv keys

    instances = {
        "encoder_embedding": instance("ee", pieces["encoder_embedding"], keys["encoder_embedding"]),
        "decoder_embedding": instance("de", pieces["decoder_embedding"], keys["decoder_embedding"]),
        "output": instance("out", pieces["output"], keys["output"]),
        "encoder_layers": [instance(f"el{i}", io, k) for i, (io, k) in enumerate(zip(pieces["encoder_layers"], keys["encoder_layers"]))],
        "cross_kv": [instance(f"kv{i}", io, k) for i, (io, k) in enumerate(zip(pieces["cross_kv"], keys["cross_kv"]))],
        "decoder_layers": [instance(f"dl{i}", io, k) for i, (io, k) in enumerate(zip(pieces["decoder_layers"], keys["decoder_layers"]))],
    }
    encoder, decoder = compose_model(instances, lambda key: loaded[key[0]])
    composed = OnnxRuntimeModel(encoder, decoder)
    deployed = OnnxRuntimeModel.from_model_dir(exported)
    src = np.array([[7, 8, 9, 10, 11, 2]])
    states = [rt.reorder(rt.encode(src), np.zeros(3, dtype=np.int64)) for rt in (composed, deployed)]
    for step, tokens in enumerate(([[2], [2], [2]], [[5], [6], [7]], [[8], [9], [10]])):
        outputs = [rt.step(np.array(tokens), step, state) for rt, state in zip((composed, deployed), states)]
        np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-4)
    from hat.export.beam import beam_search

    for ids in ([7, 8, 9, 10, 11, 2], [12, 13, 2]):
        assert beam_search(composed, ids, beam=3) == beam_search(deployed, ids, beam=3)
    # onnxruntime fuses them alike (the residual Add into LayerNormalization needs the pieces' shapes)
    deployed_files = (exported / "encoder.onnx", exported / "decoder_step.onnx")
    for graph, deployed_file in zip((encoder, decoder), deployed_files):
        assert norm_ops(graph, tmp_path / "c.onnx") == norm_ops(str(deployed_file), tmp_path / "d.onnx")


def test_no_two_weight_matrices_of_a_composed_graph_are_alike():
    """onnxruntime shares one prepacked buffer between identical constants, so no weight matrix may
    repeat another: not across instances of one piece, nor across pieces whose matrices start from
    the same values (pieces are exported with one seed). A repeat is rotated by one place per
    earlier copy; an embedding table (only looked up) keeps its values beside a tied projection."""
    from onnx import TensorProto, helper, numpy_helper

    from hat.export.compose import _Builder

    weight, bias = np.arange(64 * 128, dtype=np.float32).reshape(64, 128), np.ones(128, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])], "piece",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 128])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    piece = helper.make_model(graph)
    table = helper.make_model(helper.make_graph(
        [helper.make_node("Slice", ["w", "starts", "ends", "axes"], ["t"]), helper.make_node("Gather", ["t", "ids"], ["y"])],
        "embedding", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 128])],
        [numpy_helper.from_array(weight, "w")] + [numpy_helper.from_array(np.array([v]), n)
                                                   for n, v in (("starts", 0), ("ends", 128), ("axes", 1))]))
    builder = _Builder()
    builder.add(("embedding",), lambda key: table, "e/", {"ids": "ids", "y": "s0x"})
    for i in range(3):
        builder.add(("layer",), lambda key: piece, f"l{i}/", {"x": f"s{i}", "y": f"s{i + 1}"})
    builder.add(("other",), lambda key: piece, "o/", {"x": "s3", "y": "s4"})
    found = {t.name: numpy_helper.to_array(t) for t in builder.initializers}
    np.testing.assert_array_equal(found["e/w"], weight)  # the table is looked up: left as it is
    np.testing.assert_array_equal(found["l0/w"], weight)  # the first matrix with these values too
    matrices = [found[name] for name in ("l0/w", "l1/w", "l2/w", "o/w")]
    assert len({m.tobytes() for m in matrices}) == 4  # no two alike, whichever piece they come from
    for name in ("l0", "l1", "l2", "o"):
        np.testing.assert_array_equal(np.sort(found[f"{name}/w"], axis=None), weight.reshape(-1))  # same values
        np.testing.assert_array_equal(found[f"{name}/b"], bias)  # small constants are copied as they are


def norm_ops(graph: bytes | str, optimized: Path) -> dict[str, int]:
    """Layer-norm ops of ``graph`` (serialized, or a file) after onnxruntime's optimizations, by type."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    options.log_severity_level = 3
    ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(str(optimized), load_external_data=False).graph.node]
    return {op: ops.count(op) for op in ("LayerNormalization", "SkipLayerNormalization")}


@pytest.mark.slow
def test_reusing_the_exporters_op_table_changes_no_byte_of_a_graph(tiny_space, tmp_path):
    from hat.export import exporter
    from hat.export.pieces import _piece_model, export_piece

    key = ("output", 48)  # the cheapest piece to export
    export_piece(*_piece_model(tiny_space, key, 60, 0), tmp_path / "plain.onnx", reuse_registry=False)
    export_piece(*_piece_model(tiny_space, ("decoder_embedding", 48), 60, 0), tmp_path / "warm.onnx")  # fills the table
    assert exporter._registry_class() is None or exporter._REGISTRIES  # this torch: the table was kept
    export_piece(*_piece_model(tiny_space, key, 60, 0), tmp_path / "reused.onnx")
    assert (tmp_path / "plain.onnx").read_bytes() == (tmp_path / "reused.onnx").read_bytes()
