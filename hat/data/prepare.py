"""Raw parallel text -> sentencepiece -> fairseq data-bin (via fairseq's own preprocessing)."""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from hat.errors import HatError
from hat.io import atomic_write_json

log = logging.getLogger(__name__)
META_FILE = "hat_data.json"
LANG_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _read_split(prefix: str | Path, lang: str, what: str) -> list[str]:
    path = Path(f"{prefix}.{lang}")
    if not path.is_file():
        siblings = sorted(p.name for p in path.parent.glob(f"{Path(prefix).name}.*")) if path.parent.is_dir() else []
        hint = f" (found: {', '.join(siblings)})" if siblings else ""
        raise HatError(f"{what} file for language '{lang}' not found{hint}", path)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise HatError(f"not UTF-8 text ({err})", path) from None


def read_parallel(prefix: str | Path, src: str, tgt: str, what: str, skip_empty: bool) -> tuple[list[str], list[str]]:
    """Aligned lines; different counts are an error, empty lines an error unless ``skip_empty``."""
    source, target = _read_split(prefix, src, what), _read_split(prefix, tgt, what)
    if len(source) != len(target):
        raise HatError(f"{what}: {prefix}.{src} has {len(source)} lines but {prefix}.{tgt} has {len(target)}")
    if not source:
        raise HatError(f"{what}: {prefix}.{src} is empty")
    empty = [i for i, (s, t) in enumerate(zip(source, target)) if not s.strip() or not t.strip()]
    if empty and not skip_empty:
        raise HatError(
            f"{what}: {len(empty)} pair(s) with an empty side, first at line {empty[0] + 1} of {prefix}.{src}/.{tgt} "
            "(use --skip-empty to drop them)"
        )
    keep = set(range(len(source))) - set(empty)
    return [source[i] for i in sorted(keep)], [target[i] for i in sorted(keep)]


def prepare_data(
    *,
    src: str,
    tgt: str,
    train: str | Path,
    valid: str | Path,
    test: str | Path | Sequence[str | Path] | None,
    out: str | Path,
    bpe: str = "sentencepiece",
    vocab_size: int = 8000,
    joined_dictionary: bool = True,
    skip_empty: bool = False,
    workers: int = 1,
    seed: int = 1,
) -> Path:
    """Train sentencepiece on the training text, encode every split, binarize with fairseq.

    ``out`` gets fairseq's ``dict.*.txt`` and binary splits, the sentencepiece model(s) and
    ``hat_data.json`` describing them. With ``bpe='none'`` the text is used as tokenized. Several
    test prefixes become fairseq's splits ``test``, ``test1``, ``test2``, ... in that order.
    """
    if bpe not in ("sentencepiece", "none"):
        raise HatError(f"--bpe must be sentencepiece or none, got '{bpe}'")
    if src == tgt:
        raise HatError("--src and --tgt must differ")
    for lang in (src, tgt):
        if not LANG_PATTERN.match(lang):
            raise HatError(f"'{lang}' is not a language code (letters, digits, '_' and '-', as in file names)")
    out = Path(out)
    tests = [test] if isinstance(test, (str, Path)) else list(test or [])
    splits = {"train": train, "valid": valid} | {test_split(i): prefix for i, prefix in enumerate(tests)}
    texts = {name: read_parallel(prefix, src, tgt, name, skip_empty) for name, prefix in splits.items()}
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hat_prepare_", dir=out))
    try:
        spm_models: dict[str, str] = {}
        if bpe == "sentencepiece":
            spm_models = _train_sentencepiece(texts["train"], src, tgt, work, out, vocab_size, joined_dictionary, workers)
        encode = _encoders(out, spm_models)
        for name, (source, target) in texts.items():
            for lang, lines in ((src, source), (tgt, target)):
                (work / f"{name}.{lang}").write_text("\n".join(encode(lang, lines)) + "\n", encoding="utf-8")
        _binarize(work, out, src, tgt, len(tests), joined_dictionary, workers)
        meta = {
            "src": src, "tgt": tgt, "bpe": bpe, "sentencepiece": spm_models, "joined_dictionary": joined_dictionary,
            "vocab_size": vocab_size, "pairs": {name: len(pair[0]) for name, pair in texts.items()},
        }
        atomic_write_json(out / META_FILE, meta)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _train_sentencepiece(train: tuple[list[str], list[str]], src: str, tgt: str, work: Path, out: Path,
                         vocab_size: int, joined: bool, workers: int) -> dict[str, str]:
    """One unigram model for both languages (``joined``) or one each; returns language -> model file."""
    import sentencepiece as spm

    models: dict[str, str] = {}
    langs = {"joint": (src, tgt)} if joined else {src: (src,), tgt: (tgt,)}
    for name, members in langs.items():
        corpus = work / f"spm_{name}.txt"
        lines = [line for lang in members for line in train[0 if lang == src else 1]]
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log.info("training sentencepiece (%s, vocab %d) on %d lines", name, vocab_size, len(lines))
        try:
            spm.SentencePieceTrainer.train(
                input=str(corpus), model_prefix=str(out / f"spm.{name}"), vocab_size=vocab_size,
                character_coverage=1.0, model_type="unigram", num_threads=max(1, workers),
                minloglevel=2, hard_vocab_limit=False, bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0,
            )
        except RuntimeError as err:
            raise HatError(f"sentencepiece training failed: {str(err).splitlines()[-1]}") from None
        for lang in members:
            models[lang] = f"spm.{name}.model"
    return models


def _encoders(out: Path, models: dict[str, str]):
    """``encode(lang, lines)``: sentencepiece pieces joined by spaces, or the lines as they are."""
    import sentencepiece as spm

    processors = {lang: spm.SentencePieceProcessor(model_file=str(out / model)) for lang, model in models.items()}

    def encode(lang: str, lines: list[str]) -> list[str]:
        if lang not in processors:
            return lines
        return [" ".join(pieces) for pieces in processors[lang].encode(lines, out_type=str)]

    return encode


def test_split(index: int) -> str:
    """fairseq's name of the ``index``-th test set (0-based): ``test``, ``test1``, ``test2``, ..."""
    return f"test{index or ''}"


def _binarize(work: Path, out: Path, src: str, tgt: str, tests: int, joined: bool, workers: int) -> None:
    from fairseq import options
    from fairseq_cli import preprocess

    argv = [
        "--source-lang", src, "--target-lang", tgt,
        "--trainpref", str(work / "train"), "--validpref", str(work / "valid"),
        "--destdir", str(out), "--workers", str(workers), "--dataset-impl", "mmap",
    ]
    if tests:
        argv += ["--testpref", ",".join(str(work / test_split(i)) for i in range(tests))]
    if joined:
        argv.append("--joined-dictionary")
    for stale in out.glob("dict.*.txt"):
        stale.unlink()
    args = options.get_preprocessing_parser().parse_args(argv)
    preprocess.main(args)


MMAP_MAGIC = b"MMIDIDX\x00\x00"
MMAP_ITEM_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 8, 7: 8, 8: 2, 9: 4, 10: 8}  # fairseq's dtype codes


def load_data_meta(data_dir: str | Path, langs: tuple[str, str] | None = None) -> dict:
    """``hat_data.json`` of a prepared folder; a plain fairseq data-bin folder gets a minimal description.

    The language pair of a plain folder is read from its binary files' names, as fairseq names
    them (``SPLIT.SRC-TGT.LANG.idx``); ``langs`` = (source, target) chooses when there are several.
    """
    from hat.io import file_content, load_json

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise HatError("data folder not found", data_dir)
    meta_path = data_dir / META_FILE
    if meta_path.is_file() and (langs is None or _meta_langs(meta_path) == tuple(langs)):
        meta = load_json(meta_path, "data description")
        with file_content(meta_path, "data description"):
            for side in ("src", "tgt"):
                if not isinstance(meta[side], str) or not LANG_PATTERN.match(meta[side]):
                    raise ValueError(f"'{side}' must be a language code, got {meta[side]!r}")
            spm_models = meta.setdefault("sentencepiece", {}) or {}
            if not isinstance(spm_models, dict) or not all(
                    isinstance(v, str) and Path(v).name == v and v for v in spm_models.values()):
                raise ValueError("'sentencepiece' must map languages to file names in the folder")
        return meta
    pairs = sorted({(m.group(1), m.group(2)) for p in data_dir.glob("*.idx")
                    if (m := re.fullmatch(r"[^.]+\.([A-Za-z0-9_]+)-([A-Za-z0-9_]+)\.\1\.idx", p.name))})
    if langs is not None:
        if tuple(langs) not in pairs:
            found = ", ".join(f"{s}-{t}" for s, t in pairs) or "none"
            raise HatError(f"no {langs[0]}-{langs[1]} data in this folder (pairs found: {found})", data_dir)
        pairs = [tuple(langs)]
    if not pairs:
        raise HatError("not a fairseq data-bin folder (no SPLIT.SRC-TGT.SRC.idx files)", data_dir)
    if len(pairs) > 1:
        raise HatError(f"the folder holds several language pairs ({', '.join(f'{s}-{t}' for s, t in pairs)}): "
                       "choose one with --source-lang and --target-lang", data_dir)
    src, tgt = pairs[0]
    return {"src": src, "tgt": tgt, "bpe": "unknown", "sentencepiece": {}}


def _meta_langs(meta_path: Path) -> tuple[str, str] | None:
    from hat.io import load_json

    meta = load_json(meta_path, "data description")
    return (meta.get("src"), meta.get("tgt")) if isinstance(meta, dict) else None


def check_data_folder(data_dir: str | Path, splits: tuple[str, ...] = ("valid",),
                      langs: tuple[str, str] | None = None) -> dict:
    """Everything of a data-bin folder a command will read, checked before the work starts.

    The description, both dictionaries (fairseq's text format, UTF-8) and each split's binary
    files (index header, sentence count, the data file's length): a truncated or foreign file is
    one line naming it, not a traceback from inside fairseq. Returns the description.
    """
    from hat.export.dictionary import Dictionary

    meta = load_data_meta(data_dir, langs)
    data_dir = Path(data_dir)
    src, tgt = meta["src"], meta["tgt"]
    for lang in (src, tgt):
        Dictionary.load(data_dir / f"dict.{lang}.txt")
    for split in splits:
        for lang in (src, tgt):
            _check_mmap_split(data_dir / f"{split}.{src}-{tgt}.{lang}", split)
    return meta


def _check_mmap_split(prefix: Path, split: str) -> None:
    import numpy as np

    index, data = prefix.with_name(prefix.name + ".idx"), prefix.with_name(prefix.name + ".bin")
    if not index.is_file() or not data.is_file():
        raise HatError(f"split '{split}' not found (expected {index.name} and {data.name})", prefix.parent)
    raw = index.read_bytes()
    if len(raw) < 26 or raw[:9] != MMAP_MAGIC or int.from_bytes(raw[9:17], "little") != 1 \
            or raw[17] not in MMAP_ITEM_SIZE:
        raise HatError("not a fairseq mmap index file (wrong header); binarize with --dataset-impl mmap", index)
    count = int.from_bytes(raw[18:26], "little")
    if count == 0 or len(raw) < 26 + 12 * count:
        raise HatError(f"index file is truncated or empty ({count} sentences announced)", index)
    sizes = np.frombuffer(raw, dtype="<i4", count=count, offset=26)
    pointers = np.frombuffer(raw, dtype="<i8", count=count, offset=26 + 4 * count)
    expected = int(pointers[-1]) + int(sizes[-1]) * MMAP_ITEM_SIZE[raw[17]]
    if (sizes < 0).any() or data.stat().st_size != expected:
        raise HatError(f"data file has {data.stat().st_size} bytes, its index expects {expected} (truncated or "
                       "from another binarization?)", data)
