"""Parallel corpora as a user downloads them (IWSLT and WMT archives) -> RAW/{train,valid,test}.{SRC,TGT}.

A recipe's ``downloads`` section says where each split comes from::

    downloads:
      lowercase: true          # IWSLT'14 as fairseq prepares it
      max_words: 175           # training pairs: at most this many words a side ...
      max_ratio: 1.5           # ... and at most this ratio of their word counts
      train:
        - {files: "de-en.tgz:de-en/train.tags.de-en.{lang}", format: ted}
      valid: {hold_out_every: 23}   # every 23rd training pair (or a list of sources like test)
      test:
        - {files: "de-en.tgz:de-en/IWSLT14.TED.tst2010.de-en.{lang}.xml", format: segments}
        - {files: {en: "test-full.tgz:test-full/newstest2014-deen-src.en.sgm",
                   de: "test-full.tgz:test-full/newstest2014-deen-ref.de.sgm"}, format: segments}
        - {files: "news-commentary-v14.de-en.tsv.gz", format: tsv, columns: [de, en]}

``files`` is a path under the downloads folder, with ``{lang}`` for each language or a mapping
from language to path; ``ARCHIVE:MEMBER`` reads a member of a tar archive, and ``.gz`` files (or
members) are decompressed. Formats: ``plain`` (one sentence a line), ``ted`` (IWSLT's
train.tags files: markup lines dropped, title and description kept as text), ``segments`` (the
``<seg>`` lines of WMT SGML and IWSLT XML files, entities decoded) and ``tsv`` (one file, one
column a language). Every split is streamed, so corpora of any size fit in memory.
"""
from __future__ import annotations

import difflib
import gzip
import html
import io
import itertools
import re
import tarfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

from hat.errors import HatError
from hat.io import atomic_write_json

FORMATS = ("plain", "ted", "segments", "tsv")
SEGMENT = re.compile(r"<seg[^>]*>(.*)</seg>", re.IGNORECASE)
TED_TEXT_TAGS = re.compile(r"</?(title|description)>", re.IGNORECASE)
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Source:
    """One parallel source: where each language's text is and how it is laid out."""

    files: Mapping[str, str]  # language -> location (tsv: both languages name the same file)
    format: str
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cleaning:
    """What is done to every pair, and the length filters for training pairs."""

    lowercase: bool = False
    max_words: int = 0  # 0: no limit
    max_ratio: float = 0.0  # 0: no limit


def _source(entry: Any, langs: tuple[str, str], where: str) -> Source:
    if not isinstance(entry, Mapping) or entry.get("format") not in FORMATS or "files" not in entry:
        raise HatError(f"{where}: each source needs files and a format ({', '.join(FORMATS)}), got {entry!r}")
    files, fmt = entry["files"], entry["format"]
    if fmt == "tsv":
        columns = tuple(entry.get("columns") or ())
        if not isinstance(files, str) or not set(langs) <= set(columns):
            raise HatError(f"{where}: a tsv source is one file with columns naming {' and '.join(langs)}")
        return Source({lang: files for lang in langs}, fmt, columns)
    if isinstance(files, str):
        if "{lang}" not in files:
            raise HatError(f"{where}: {files!r} needs {{lang}} (or give one file per language)")
        return Source({lang: files.format(lang=lang) for lang in langs}, fmt)
    if not isinstance(files, Mapping) or set(files) != set(langs):
        raise HatError(f"{where}: files must map exactly {' and '.join(langs)} to paths, got {files!r}")
    return Source(dict(files), fmt)


def parse_downloads(spec: Any, src: str, tgt: str, path: str | Path) -> tuple[dict[str, Any], Cleaning]:
    """The splits (lists of :class:`Source`, or ``{"hold_out_every": N}`` for valid) and the cleaning."""
    if not isinstance(spec, Mapping) or not all(split in spec for split in SPLITS):
        raise HatError("downloads: needs train, valid and test", path)
    langs = (src, tgt)
    splits: dict[str, Any] = {}
    for split in SPLITS:
        entries = spec[split]
        if split == "valid" and isinstance(entries, Mapping):
            every = entries.get("hold_out_every")
            if isinstance(every, bool) or not isinstance(every, int) or every < 2:
                raise HatError(f"downloads: valid: hold_out_every must be an integer of at least 2, got {every!r}", path)
            splits[split] = {"hold_out_every": every}
            continue
        if not isinstance(entries, list) or not entries:
            raise HatError(f"downloads: {split} must be a non-empty list of sources", path)
        splits[split] = [_source(entry, langs, f"{path}: downloads: {split}") for entry in entries]
    cleaning = Cleaning(bool(spec.get("lowercase", False)), int(spec.get("max_words", 0)),
                        float(spec.get("max_ratio", 0.0)))
    return splits, cleaning


def _open_location(downloads: Path, location: str, stack: ExitStack) -> IO[str]:
    archive, _, member = location.partition(":") if ":" in location else (location, "", "")
    path = downloads / archive
    if not path.is_file():
        raise HatError("not found (download it into the downloads folder, or fix the recipe's downloads section)", path)
    if member:
        tar = stack.enter_context(tarfile.open(path, "r:*"))
        try:
            raw: IO[bytes] = tar.extractfile(member) or io.BytesIO()
        except KeyError:
            near = difflib.get_close_matches(member, tar.getnames(), n=3, cutoff=0.5)
            raise HatError(f"no member {member}" + (f" (close: {', '.join(near)})" if near else ""), path) from None
    else:
        raw = stack.enter_context(open(path, "rb"))
    if location.endswith(".gz"):
        raw = stack.enter_context(gzip.GzipFile(fileobj=raw))
    return stack.enter_context(io.TextIOWrapper(raw, encoding="utf-8", errors="strict"))


def _texts(lines: IO[str], fmt: str) -> Iterator[str]:
    for line in lines:
        if fmt == "segments":
            match = SEGMENT.search(line)
            if match:
                yield html.unescape(match.group(1))
        elif fmt == "ted":
            if not line.lstrip().startswith("<") or TED_TEXT_TAGS.match(line.strip()):
                yield TED_TEXT_TAGS.sub("", line)
        else:
            yield line


def _pairs(source: Source, langs: tuple[str, str], downloads: Path) -> Iterator[tuple[str, str]]:
    with ExitStack() as stack:
        try:
            if source.format == "tsv":
                columns = [source.columns.index(lang) for lang in langs]
                for number, line in enumerate(_open_location(downloads, source.files[langs[0]], stack), 1):
                    cells = line.rstrip("\n").split("\t")
                    if len(cells) < len(source.columns):
                        raise HatError(f"line {number} has {len(cells)} columns, not {len(source.columns)}",
                                       downloads / source.files[langs[0]])
                    yield cells[columns[0]], cells[columns[1]]
                return
            sides = [_texts(_open_location(downloads, source.files[lang], stack), source.format) for lang in langs]
            for first, second in itertools.zip_longest(*sides):
                if first is None or second is None:
                    raise HatError(f"{source.files[langs[0]]} and {source.files[langs[1]]} have different numbers "
                                   f"of sentences", downloads)
                yield first, second
        except (UnicodeDecodeError, OSError, EOFError, tarfile.TarError) as err:
            raise HatError(f"cannot read {source.files[langs[0]]} / {source.files[langs[1]]}: {err}", downloads) from None


def _clean(pair: tuple[str, str], cleaning: Cleaning, filter_lengths: bool) -> tuple[str, str] | None:
    first, second = (" ".join(text.split()) for text in pair)
    if cleaning.lowercase:
        first, second = first.lower(), second.lower()
    if not first or not second:
        return None
    if filter_lengths:
        words = len(first.split()), len(second.split())
        if cleaning.max_words and max(words) > cleaning.max_words:
            return None
        if cleaning.max_ratio and max(words) > cleaning.max_ratio * min(words):
            return None
    return first, second


class _SplitWriter:
    """Writes one split's two files under temporary names; ``commit`` renames them into place."""

    def __init__(self, raw: Path, split: str, langs: tuple[str, str]) -> None:
        self.paths = [raw / f"{split}.{lang}" for lang in langs]
        self.files = [open(path.with_name(path.name + ".partial"), "w", encoding="utf-8") for path in self.paths]
        self.pairs = 0

    def write(self, pair: tuple[str, str]) -> None:
        for file, text in zip(self.files, pair):
            file.write(text + "\n")
        self.pairs += 1

    def commit(self) -> None:
        for file, path in zip(self.files, self.paths):
            file.close()
            Path(file.name).replace(path)

    def discard(self) -> None:
        for file in self.files:
            file.close()
            Path(file.name).unlink(missing_ok=True)


def _write_splits(splits: dict[str, Any], cleaning: Cleaning, langs: tuple[str, str], downloads: Path,
                  writers: dict[str, _SplitWriter]) -> dict[str, int]:
    """Stream every source into its split's writer (every ``hold_out_every``-th kept training pair to
    valid, when valid is held out); returns the pairs dropped per split."""
    dropped = dict.fromkeys(SPLITS, 0)
    hold_out = splits["valid"].get("hold_out_every") if isinstance(splits["valid"], Mapping) else None
    for split in ("train", "test") if hold_out else SPLITS:
        kept = 0
        for source in splits[split]:
            for pair in _pairs(source, langs, downloads):
                cleaned = _clean(pair, cleaning, filter_lengths=split == "train")
                if cleaned is None:
                    dropped[split] += 1
                    continue
                kept += 1
                writers["valid" if hold_out and split == "train" and kept % hold_out == 0 else split].write(cleaned)
    return dropped


def extract_corpus(spec: Any, src: str, tgt: str, downloads: str | Path, raw: str | Path,
                   recipe: str | Path = "recipe") -> dict[str, dict[str, int]]:
    """Write RAW/{train,valid,test}.{src,tgt} from the downloaded files; returns pairs kept and dropped
    per split (also written to RAW/corpus.json, last, so that its presence means the corpus is whole)."""
    splits, cleaning = parse_downloads(spec, src, tgt, recipe)
    langs, downloads, raw = (src, tgt), Path(downloads), Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    writers = {split: _SplitWriter(raw, split, langs) for split in SPLITS}
    try:
        dropped = _write_splits(splits, cleaning, langs, downloads, writers)
        for split, writer in writers.items():
            if writer.pairs == 0:
                raise HatError(f"downloads: no {split} pairs were read (check the files and formats)", recipe)
    except BaseException:
        for writer in writers.values():
            writer.discard()  # nothing half-written stays behind
        raise
    for writer in writers.values():
        writer.commit()
    stats = {split: {"pairs": writers[split].pairs, "dropped": dropped[split]} for split in SPLITS}
    atomic_write_json(raw / "corpus.json", stats)
    return stats
