"""A self-contained model directory: SubTransformer weights only, config, dictionaries, sentencepiece
models, a manifest, and optionally ONNX graphs (fp32 and int8).

Writing needs torch; reading the ONNX side needs only numpy, pyyaml, onnxruntime and sentencepiece.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from hat.errors import HatError
from hat.io import atomic_write_json, file_sha256

log = logging.getLogger(__name__)
MANIFEST, WEIGHTS, CONFIG = "manifest.json", "weights.safetensors", "config.yaml"
ONNX_FILES = {"fp32": ("encoder.onnx", "decoder_step.onnx"), "int8": ("encoder.int8.onnx", "decoder_step.int8.onnx")}
FORMAT = "hat-model-v2"  # v2: sha256 of every file in "files"


def export_model(
    checkpoint: str | Path,
    config_path: str | Path | None,
    data: str | Path,
    out: str | Path,
    *,
    onnx: bool = False,
    quantize: str | None = None,
) -> Path:
    """Extract ``config``'s SubTransformer from a checkpoint into ``out`` (see module docstring)."""
    import torch
    from safetensors.torch import save_model

    from hat.checkpoints import load_supernet
    from hat.data.prepare import check_data_folder
    from hat.subtransformer import count_parameters, extract_subtransformer

    if quantize not in (None, "int8"):
        raise HatError(f"--quantize supports int8 only, got '{quantize}'")
    if quantize and not onnx:
        raise HatError("--quantize int8 quantizes the ONNX graphs: add --onnx")
    loaded = load_supernet(checkpoint)
    config = _chosen_config(loaded, config_path)
    meta = check_data_folder(data, (), loaded.langs)
    data = Path(data)
    src_dict, tgt_dict = _matching_dictionaries(data, meta, loaded)
    model = extract_subtransformer(loaded.supernet, config).eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / WEIGHTS))
    config.to_yaml(out / CONFIG)
    shutil.copy(src_dict, out / "dict.src.txt")
    shutil.copy(tgt_dict, out / "dict.tgt.txt")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "space": loaded.space.name, "space_fingerprint": loaded.space.fingerprint,
        "archid": config.archid,
        "parameters": count_parameters(config, model.dims),
        "parameters_without_embeddings": count_parameters(config, model.dims, include_embeddings=False),
        "dims": model.dims.to_dict(),
        "source_checkpoint": {"path": str(checkpoint), "sha256": loaded.sha256, "num_updates": loaded.num_updates},
        "languages": {"src": meta["src"], "tgt": meta["tgt"]},
        "sentencepiece": _copy_sentencepiece(data, meta, out),
        "weights": WEIGHTS, "config": CONFIG, "torch": torch.__version__,
        "onnx": _write_onnx(model, out, quantize) if onnx else {},
        "files": {},
    }
    manifest["files"] = {name: file_sha256(out / name) for name in _listed_files(manifest)}
    atomic_write_json(out / MANIFEST, manifest)
    return out


def _chosen_config(loaded: Any, config_path: str | Path | None) -> Any:
    """The config file's SubTransformer (checked against the space), else the checkpoint's default."""
    from hat.space import SubTransformerConfig

    if config_path is None:
        from hat.evaluation import default_config

        return default_config(loaded)
    config = SubTransformerConfig.from_yaml(config_path)
    try:
        loaded.space.validate(config)
    except HatError as err:
        raise HatError(str(err), config_path) from None
    return config


def _matching_dictionaries(data: Path, meta: dict[str, Any], loaded: Any) -> tuple[Path, Path]:
    """The data folder's dictionaries, which must have the checkpoint's vocabulary sizes."""
    from hat.export.dictionary import Dictionary

    src_dict, tgt_dict = data / f"dict.{meta['src']}.txt", data / f"dict.{meta['tgt']}.txt"
    if len(Dictionary.load(src_dict)) != loaded.supernet.src_vocab_size or \
            len(Dictionary.load(tgt_dict)) != loaded.supernet.tgt_vocab_size:
        raise HatError("the data folder's dictionaries do not match the checkpoint's vocabulary sizes", data)
    return src_dict, tgt_dict


def _copy_sentencepiece(data: Path, meta: dict[str, Any], out: Path) -> dict[str, str]:
    """Copy the data folder's sentencepiece models (each loaded first: a corrupt one fails, named)."""
    from hat.export.runtime import load_sentencepiece

    spm = {}
    for lang, side in ((meta["src"], "src"), (meta["tgt"], "tgt")):
        name = (meta.get("sentencepiece") or {}).get(lang)
        if name:
            load_sentencepiece(data / name)
            shutil.copy(data / name, out / f"spm.{side}.model")
            spm[side] = f"spm.{side}.model"
    return spm


def _write_onnx(model: Any, out: Path, quantize: str | None) -> dict[str, dict[str, str]]:
    """The fp32 encoder and decoder-step graphs, and their int8 versions when asked."""
    from hat.export.graphs import export_onnx

    encoder, decoder = ONNX_FILES["fp32"]
    export_onnx(model, str(out / encoder), str(out / decoder))
    graphs = {"fp32": {"encoder": encoder, "decoder_step": decoder}}
    if quantize == "int8":
        from hat.export.graphs import quantize_int8

        q_encoder, q_decoder = ONNX_FILES["int8"]
        for source, target in ((encoder, q_encoder), (decoder, q_decoder)):
            quantize_int8(str(out / source), str(out / target))
        graphs["int8"] = {"encoder": q_encoder, "decoder_step": q_decoder}
    return graphs


def _listed_files(manifest: dict[str, Any]) -> list[str]:
    """Every file of the model directory that the manifest names (all plain names, no paths)."""
    names = [manifest["weights"], manifest["config"], "dict.src.txt", "dict.tgt.txt",
             *manifest["sentencepiece"].values()]
    for graphs in manifest["onnx"].values():
        names += list(graphs.values())
    for name in names:
        if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
            raise ValueError(f"file name {name!r} is not a plain file name")
    return names


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The manifest of an exported model, after checking every file it names against its sha256."""
    from hat.io import file_content, load_json

    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not path.is_file():
        raise HatError("not an exported HAT model (no manifest.json)", model_dir)
    manifest = load_json(path, "model manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        hint = "; export the model again" if found == "hat-model-v1" else ""
        raise HatError(f"unknown model format {found!r} (expected {FORMAT}){hint}", path)
    with file_content(path, "model manifest"):
        names = _listed_files(manifest)
        hashes = manifest["files"]
        dims = manifest["dims"]
        for key in ("src_vocab_size", "tgt_vocab_size", "padding_idx"):
            if isinstance(dims[key], bool) or not isinstance(dims[key], int) or dims[key] < 0:
                raise ValueError(f"dims.{key} must be a non-negative integer")
        for key in ("archid", "space", "space_fingerprint"):
            if not isinstance(manifest[key], str):
                raise ValueError(f"{key} must be a string")
        for name in names:
            if not isinstance(hashes.get(name), str):
                raise ValueError(f"no sha256 for {name}")
    for name in names:
        if not (model_dir / name).is_file():
            raise HatError(f"model directory is missing {name}", model_dir)
        if file_sha256(model_dir / name) != hashes[name]:
            raise HatError(f"{name} was changed after export (its sha256 does not match the manifest)", model_dir)
    return manifest

