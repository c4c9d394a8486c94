"""Chain exported pieces (:mod:`hat.export.pieces`) into the two graphs of a deployed model.

The result has the inputs and outputs of :func:`hat.export.graphs.export_onnx`'s graphs, so
:class:`hat.export.runtime.OnnxRuntimeModel` and the numpy beam loop run it unchanged. Every
layer gets its own weights, as in a real model: a copy of its piece's, with a weight matrix whose
values already occur in the graph rotated, so that no two constants hold the same values. Pieces
are exported with one seed, so layers of one piece, and layers of different pieces whose matrices
have one shape (two decoder layers that differ only in their heads), start from identical values;
onnxruntime would share one prepacked buffer between identical constants, and a model whose layers
read one matrix from cache runs faster than a trained one. Needs only ``onnx`` and numpy.
"""
from __future__ import annotations

from typing import Any, Callable

import onnx
from onnx import helper, numpy_helper

PieceLoader = Callable[[tuple], onnx.ModelProto]  # piece key -> its ONNX model
# Bumped whenever composing changes what onnxruntime runs: 2 keeps the pieces' intermediate shapes,
# so onnxruntime fuses the same ops as in exported graphs (1, unrecorded in files, dropped them);
# 3 gives every instance of a piece distinct weight values (2 repeated them, and onnxruntime ran
# the largest WMT14 decoder 1.38x faster than its exported graph); 4 also those of different pieces
# (3 repeated a matrix between pieces of one shape: a WMT14 model ran up to 8% faster than exported).
# Latency files record it; rows timed on graphs composed another way are not resumed into.
COMPOSE_VERSION = 4
# Constants of at least this many values are weight matrices: no two in a graph are alike.
DISTINCT_WEIGHT_SIZE = 4096
WEIGHT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8, onnx.TensorProto.UINT8)


class _Builder:
    """Accumulates renamed nodes and initializers of piece instances."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: dict[str, onnx.ValueInfoProto] = {}
        self.outputs: dict[str, onnx.ValueInfoProto] = {}
        self.value_info: list[onnx.ValueInfoProto] = []
        self.opsets: list[onnx.OperatorSetIdProto] = []
        self.ir_version = 0
        self.seen: dict[bytes, int] = {}  # digest of a weight matrix -> times added so far

    def add(self, key: Any, load: PieceLoader, prefix: str, bindings: dict[str, str],
            dims: dict[str, str] | None = None) -> None:
        """Add one instance of the piece ``key``: its inputs/outputs renamed by ``bindings``, the rest by
        ``prefix``, and the symbolic dimensions of its shapes by ``dims`` (a symbol one piece uses for a
        length that differs between its instances, such as ``cross_len``, must not join them in one
        graph). A weight matrix whose values the graph holds n times already is rotated by n places."""
        piece = load(key)
        graph = piece.graph
        dims = dims or {}

        def copy_info(value: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
            info = onnx.ValueInfoProto()
            info.CopyFrom(value)
            info.name = name
            for dim in info.type.tensor_type.shape.dim:
                if dim.dim_param in dims:
                    dim.dim_param = dims[dim.dim_param]
            return info

        ends = {v.name for v in graph.input} | {v.name for v in graph.output}
        if not ends <= set(bindings):
            raise ValueError(f"piece {graph.name}: unbound inputs/outputs {sorted(ends - set(bindings))}")
        rename = lambda name: "" if name == "" else bindings.get(name, prefix + name)  # noqa: E731
        lookups = _lookup_tables(graph)
        for tensor in graph.initializer:
            copy = _distinct_copy(tensor, 0 if tensor.name in lookups else self._repeats(tensor))
            copy.name = rename(tensor.name)
            self.initializers.append(copy)
        for value in graph.value_info:  # intermediate shapes: onnxruntime's fusions need them
            self.value_info.append(copy_info(value, rename(value.name)))
        for node in graph.node:
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                raise ValueError(f"piece {graph.name}: control flow ({node.op_type}) is not supported")
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = prefix + node.name
            copy.input[:] = [rename(n) for n in node.input]
            copy.output[:] = [rename(n) for n in node.output]
            self.nodes.append(copy)
        for kind, values in (("input", graph.input), ("output", graph.output)):
            for value in values:
                info = copy_info(value, bindings[value.name])
                (self.inputs if kind == "input" else self.outputs).setdefault(info.name, info)
        if not self.opsets:
            self.opsets, self.ir_version = list(piece.opset_import), piece.ir_version

    def _repeats(self, tensor: onnx.TensorProto) -> int:
        """How often a weight matrix with ``tensor``'s type, shape and values was added before
        (0 for small constants)."""
        import hashlib

        if not _is_weight(tensor):
            return 0
        data = tensor.raw_data or numpy_helper.to_array(tensor).tobytes()
        # The leading bytes tell pieces' matrices apart; a false match only rotates a matrix once more.
        digest = hashlib.sha1(f"{tensor.data_type}:{list(tensor.dims)}:".encode() + data[:1 << 16]).digest()
        count = self.seen.get(digest, 0)
        self.seen[digest] = count + 1
        return count

    def tile(self, source: str, repeats: int, target: str) -> None:
        """``target = Tile(source, [1, repeats])`` (the padding mask of k concatenated encoder outputs)."""
        import numpy as np

        const = f"{target}_repeats"
        self.initializers.append(numpy_helper.from_array(np.array([1, repeats], dtype=np.int64), const))
        self.nodes.append(helper.make_node("Tile", [source, const], [target], name=f"{target}_tile"))

    def model(self, name: str, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, [self.inputs[n] for n in inputs], [self.outputs[n] for n in outputs],
                                  initializer=self.initializers, value_info=self.value_info)
        return helper.make_model(graph, opset_imports=self.opsets, ir_version=self.ir_version, producer_name="hat")


def _distinct_copy(tensor: onnx.TensorProto, instance: int) -> onnx.TensorProto:
    """A copy of ``tensor``; a weight matrix's values (float, or int8 once quantized) are rotated by
    ``instance`` places (same values, another order)."""
    import numpy as np

    if instance == 0 or not _is_weight(tensor):
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        return copy
    values = numpy_helper.to_array(tensor)
    return numpy_helper.from_array(np.roll(values.reshape(-1), instance).reshape(values.shape), tensor.name)


def _lookup_tables(graph: onnx.GraphProto) -> set[str]:
    """Constants only rows of which are read (through slicing, a Gather's table): an embedding table.
    A tied output projection holds the same values, as it does in the real model, so neither counts
    as a repeat of the other; onnxruntime prepacks only the projection's."""
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, position))

    def looked_up(name: str) -> bool:
        uses = consumers.get(name, [])
        return bool(uses) and all(
            (node.op_type == "Gather" and position == 0)
            or (node.op_type in _PASS_THROUGH and position == 0 and all(looked_up(out) for out in node.output))
            for node, position in uses)

    return {tensor.name for tensor in graph.initializer if looked_up(tensor.name)}


_PASS_THROUGH = ("Slice", "Identity", "Cast", "Reshape")


def _is_weight(tensor: onnx.TensorProto) -> bool:
    """A weight matrix: a float or 8-bit constant of at least ``DISTINCT_WEIGHT_SIZE`` values."""
    size = 1
    for dim in tensor.dims:
        size *= dim
    return size >= DISTINCT_WEIGHT_SIZE and tensor.data_type in WEIGHT_TYPES


def compose_encoder(keys: dict[str, Any], load: PieceLoader) -> onnx.ModelProto:
    """src_tokens -> padding_mask, then cross_k_i / cross_v_i of every decoder layer."""
    builder = _Builder()
    builder.add(keys["encoder_embedding"], load, "embed/", {"src_tokens": "src_tokens", "x": "state_0",
                                                            "padding_mask": "padding_mask"})
    layers = len(keys["encoder_layers"])
    for i, key in enumerate(keys["encoder_layers"]):
        builder.add(key, load, f"encoder_{i}/", {"x": f"state_{i}", "padding_mask": "padding_mask",
                                                 "y": f"state_{i + 1}"})
    outputs = ["padding_mask"]
    for i, key in enumerate(keys["cross_kv"]):
        k = key[-1]
        bindings = {f"state_{m}": f"state_{layers - m}" for m in range(k)}  # newest encoder output first
        bindings.update(cross_k=f"cross_k_{i}", cross_v=f"cross_v_{i}")
        builder.add(key, load, f"cross_kv_{i}/", bindings)
        outputs += [f"cross_k_{i}", f"cross_v_{i}"]
    return builder.model("encoder", ["src_tokens"], outputs)


def compose_decoder_step(keys: dict[str, Any], load: PieceLoader) -> onnx.ModelProto:
    """tokens, positions, padding_mask, cross and past caches -> log_probs and present caches."""
    builder = _Builder()
    builder.add(keys["decoder_embedding"], load, "embed/", {"tokens": "tokens", "positions": "positions", "x": "x_0"})
    masks: dict[int, str] = {1: "padding_mask"}
    layers = keys["decoder_layers"]
    for i, (key, kv_key) in enumerate(zip(layers, keys["cross_kv"])):
        k = kv_key[-1]
        if k not in masks:
            masks[k] = f"padding_mask_x{k}"
            builder.tile("padding_mask", k, masks[k])
        builder.add(key, load, f"decoder_{i}/", {
            "x": f"x_{i}", "cross_mask": masks[k], "cross_k": f"cross_k_{i}", "cross_v": f"cross_v_{i}",
            "past_k": f"past_k_{i}", "past_v": f"past_v_{i}", "y": f"x_{i + 1}",
            "present_k": f"present_k_{i}", "present_v": f"present_v_{i}",
        }, dims={"cross_len": "src_len" if k == 1 else f"{k}*src_len"})  # as the encoder's cross_kv pieces name it
    builder.add(keys["output"], load, "output/", {"x": f"x_{len(layers)}", "log_probs": "log_probs"})
    if "padding_mask" not in builder.inputs:  # every layer attends to k > 1 outputs: the mask enters via Tile only
        builder.inputs["padding_mask"] = _mask_input(load(layers[0]))
    n = len(layers)
    inputs = ["tokens", "positions", "padding_mask"] + [f"cross_{t}_{i}" for i in range(n) for t in ("k", "v")]
    inputs += [f"past_{t}_{i}" for i in range(n) for t in ("k", "v")]
    outputs = ["log_probs"] + [f"present_{t}_{i}" for i in range(n) for t in ("k", "v")]
    return builder.model("decoder_step", inputs, outputs)


def _mask_input(layer_piece: onnx.ModelProto) -> onnx.ValueInfoProto:
    info = onnx.ValueInfoProto()
    info.CopyFrom(next(v for v in layer_piece.graph.input if v.name == "cross_mask"))
    info.name = "padding_mask"
    info.type.tensor_type.shape.dim[1].dim_param = "src_len"
    return info


def compose_model(keys: dict[str, Any], load: PieceLoader) -> tuple[bytes, bytes]:
    """Serialized (encoder, decoder step) graphs of the model whose pieces are ``keys``."""
    return compose_encoder(keys, load).SerializeToString(), compose_decoder_step(keys, load).SerializeToString()
