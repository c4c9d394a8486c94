"""Runtimes for exported models: onnxruntime (no torch needed) and PyTorch, behind one step interface."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from hat.errors import HatError
from hat.export.dictionary import Dictionary
from hat.export.model_dir import read_manifest

log = logging.getLogger(__name__)


def load_sentencepiece(path: Path) -> Any:
    """A sentencepiece model; a corrupt file is one line naming it."""
    import sentencepiece

    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as err:
        raise HatError(f"not a sentencepiece model ({' '.join(str(err).split())[:200]})", path) from None


def make_session(graph: str | Path | bytes, threads: int | None = None, provider: str = "CPUExecutionProvider") -> Any:
    """An onnxruntime session (all graph optimizations; ``threads`` intra-op threads, one inter-op)."""
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        raise HatError(f"onnxruntime here has no {provider} (available: {', '.join(ort.get_available_providers())})")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    source = graph if isinstance(graph, bytes) else str(graph)
    try:
        return ort.InferenceSession(source, options, providers=[provider])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        where = None if isinstance(graph, bytes) else graph
        raise HatError(f"onnxruntime cannot load the graph: {str(err).splitlines()[0][:300]}", where) from None


class OnnxRuntimeModel:
    """Encoder and decoder-step sessions; the state is the padding mask and the key/value caches."""

    def __init__(self, encoder_path: str | Path | bytes, decoder_path: str | Path | bytes, padding_idx: int = 1,
                 threads: int | None = None, provider: str = "CPUExecutionProvider") -> None:
        """Graphs as files or as serialized bytes; ``provider``: an onnxruntime execution provider."""
        self.encoder = make_session(encoder_path, threads, provider)
        self.decoder = make_session(decoder_path, threads, provider)
        self.cross_names = [o.name for o in self.encoder.get_outputs()][1:]
        inputs = [i.name for i in self.decoder.get_inputs()]
        self.past_names = [n for n in inputs if n.startswith("past_")]
        self.padding_idx = padding_idx
        # (heads, head size) of each layer's self-attention cache: static in the exported graph.
        self.past_shapes = {i.name: (int(i.shape[1]), int(i.shape[3])) for i in self.decoder.get_inputs()
                            if i.name.startswith("past_")}

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, precision: str = "fp32", threads: int | None = None,
                       manifest: dict[str, Any] | None = None,
                       provider: str = "CPUExecutionProvider") -> "OnnxRuntimeModel":
        """``manifest``: the directory's manifest when the caller has read (and so checked) it already."""
        manifest = manifest or read_manifest(model_dir)
        graphs = manifest.get("onnx", {}).get(precision)
        if not graphs:
            raise HatError(f"model has no {precision} ONNX graphs (export with --onnx"
                           f"{' --quantize int8' if precision == 'int8' else ''})", model_dir)
        model_dir = Path(model_dir)
        for name in graphs.values():
            if not (model_dir / name).is_file():
                raise HatError(f"model directory is missing {name}", model_dir)
        return cls(model_dir / graphs["encoder"], model_dir / graphs["decoder_step"], manifest["dims"]["padding_idx"],
                   threads, provider)

    def encode(self, src_tokens: np.ndarray) -> dict[str, Any]:
        outputs = self.encoder.run(None, {"src_tokens": src_tokens.astype(np.int64)})
        state = {"padding_mask": outputs[0], **dict(zip(self.cross_names, outputs[1:]))}
        for name, (heads, head_size) in self.past_shapes.items():
            state[name] = np.zeros((src_tokens.shape[0], heads, 0, head_size), dtype=np.float32)
        return state

    def step(self, tokens: np.ndarray, position: int, state: dict[str, Any]) -> np.ndarray:
        feeds = {"tokens": tokens.astype(np.int64),
                 "positions": np.full(tokens.shape, self.padding_idx + 1 + position, dtype=np.int64),
                 "padding_mask": state["padding_mask"]}
        feeds.update({n: state[n] for n in self.cross_names})
        feeds.update({n: state[n] for n in self.past_names})
        outputs = self.decoder.run(None, feeds)
        for name, value in zip(self.past_names, outputs[1:]):
            state[name] = value
        return outputs[0]

    @staticmethod
    def reorder(state: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
        return {name: value[rows] for name, value in state.items()}


class TorchModel:
    """The same computation in PyTorch (the exported graphs' torch modules)."""

    def __init__(self, model_dir: str | Path, threads: int | None = None,
                 manifest: dict[str, Any] | None = None) -> None:
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        from hat.export.graphs import DecoderStepGraph, EncoderGraph
        from hat.space import SubTransformerConfig
        from hat.subtransformer import ModelDims, SubTransformer

        manifest = manifest or read_manifest(model_dir)
        model_dir = Path(model_dir)
        config = SubTransformerConfig.from_yaml(model_dir / manifest["config"])
        if config.archid != manifest["archid"]:
            raise HatError(f"config.yaml ({config.archid}) does not match the manifest ({manifest['archid']})", model_dir)
        model = SubTransformer(config, ModelDims(**manifest["dims"]))
        weights = model_dir / manifest["weights"]
        if not weights.is_file():
            raise HatError(f"model directory is missing {manifest['weights']}", model_dir)
        try:
            load_model(model, str(weights), strict=True)
        except (RuntimeError, SafetensorError) as err:
            raise HatError(f"weights do not match config.yaml: {str(err).splitlines()[0][:300]}", weights) from None
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model = model.eval()
        self.encoder_graph, self.decoder_graph = EncoderGraph(model), DecoderStepGraph(model)
        self.layers = len(model.decoder.layers)
        self.padding_idx = model.dims.padding_idx
        self.qkv = model.dims.qkv_dim

    def encode(self, src_tokens: np.ndarray) -> dict[str, Any]:
        torch = self.torch
        with torch.inference_mode():
            outputs = self.encoder_graph(torch.from_numpy(src_tokens.astype(np.int64)))
        state = {"padding_mask": outputs[0], "cross": list(outputs[1:]), "past": []}
        for layer in self.model.decoder.layers:
            heads = layer.self_attn.num_heads
            empty = torch.zeros(src_tokens.shape[0], heads, 0, self.qkv // heads)
            state["past"] += [empty, empty]
        return state

    def step(self, tokens: np.ndarray, position: int, state: dict[str, Any]) -> np.ndarray:
        torch = self.torch
        tokens_t = torch.from_numpy(tokens.astype(np.int64))
        positions = torch.full_like(tokens_t, self.padding_idx + 1 + position)
        with torch.inference_mode():
            outputs = self.decoder_graph(tokens_t, positions, state["padding_mask"], *state["cross"], *state["past"])
        state["past"] = list(outputs[1:])
        return outputs[0].numpy()

    def reorder(self, state: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
        index = self.torch.from_numpy(rows)
        return {"padding_mask": state["padding_mask"][index], "cross": [t[index] for t in state["cross"]],
                "past": [t[index] for t in state["past"]]}


def load_runtime(model_dir: str | Path, backend: str = "onnxruntime", precision: str = "fp32", threads: int | None = None,
                 manifest: dict[str, Any] | None = None, provider: str = "CPUExecutionProvider"):
    """The runtime of an exported model; ``manifest`` spares reading (and hashing) the files again."""
    if backend == "onnxruntime":
        return OnnxRuntimeModel.from_model_dir(model_dir, precision, threads, manifest, provider)
    if backend == "torch":
        if precision != "fp32":
            raise HatError("the torch backend runs the fp32 weights; int8 is for onnxruntime")
        return TorchModel(model_dir, threads, manifest)
    raise HatError(f"unknown backend '{backend}' (onnxruntime or torch)")


class Translator:
    """Text in, text out: sentencepiece, dictionary, beam search on a runtime."""

    def __init__(self, model_dir: str | Path, backend: str = "onnxruntime", precision: str = "fp32",
                 threads: int | None = None) -> None:
        manifest = read_manifest(model_dir)
        model_dir = Path(model_dir)
        self.runtime = load_runtime(model_dir, backend, precision, threads, manifest)
        self.src_dict = Dictionary.load(model_dir / "dict.src.txt")
        self.tgt_dict = Dictionary.load(model_dir / "dict.tgt.txt")
        dims = manifest["dims"]
        if len(self.src_dict) != dims["src_vocab_size"] or len(self.tgt_dict) != dims["tgt_vocab_size"]:
            raise HatError("dictionaries do not match the model's vocabulary sizes", model_dir)
        self.spm = {side: load_sentencepiece(model_dir / name) for side, name in manifest["sentencepiece"].items()}
        # beam search runs up to 1.2 * source + 10 steps; both must stay inside the position table
        self.max_source_tokens = max(1, int((dims.get("max_positions", 1024) - 10) / 1.2))

    def encode_text(self, text: str) -> list[int]:
        pieces = self.spm["src"].encode(text, out_type=str) if "src" in self.spm else text.split()
        return self.src_dict.encode(pieces)

    def decode_ids(self, ids: list[int]) -> str:
        pieces = self.tgt_dict.decode(ids)
        return self.spm["tgt"].decode_pieces(pieces) if "tgt" in self.spm else " ".join(pieces)

    def translate(self, text: str, beam: int = 5, lenpen: float = 1.0) -> str:
        from hat.export.beam import beam_search, greedy_search

        ids = self.encode_text(text)
        if len(ids) > self.max_source_tokens:
            log.warning("input line of %d tokens truncated to the model's %d", len(ids), self.max_source_tokens)
            ids = ids[: self.max_source_tokens - 1] + [ids[-1]]
        if beam == 1:
            out = greedy_search(self.runtime, ids, eos=self.tgt_dict.eos)
        else:
            out = beam_search(self.runtime, ids, beam=beam, lenpen=lenpen, eos=self.tgt_dict.eos)
        return self.decode_ids(out)
