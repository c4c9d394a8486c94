"""Downloads laid out as IWSLT'14 and WMT release them, built from given sentence pairs (for tests)."""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Sequence

Pairs = Sequence[tuple[str, str]]


def add_member(tar: tarfile.TarFile, name: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def ted_tags(sentences: Sequence[str], title: str) -> str:
    """An IWSLT train.tags file: talk markup lines around the sentences, a title kept as text."""
    return "".join(["<url>http://www.ted.com/talks/x.html</url>\n", "<keywords>talks, science</keywords>\n",
                    "<speaker>Someone</speaker>\n", "<talkid>1</talkid>\n", f"<title>{title}</title>\n",
                    *(f"{s}\n" for s in sentences), "<reviewer></reviewer>\n", "<translator></translator>\n"])


def segments(sentences: Sequence[str], lang: str, sgml: bool = False) -> str:
    """An IWSLT XML or WMT SGML file: one ``<seg>`` a sentence, text escaped."""
    escaped = [s.replace("&", "&amp;").replace("<", "&lt;") for s in sentences]
    head = f'<refset setid="x" srclang="any" trglang="{lang}">\n<doc docid="d" genre="news">\n'
    body = "".join(f'<seg id="{i}">{s}</seg>\n' for i, s in enumerate(escaped, 1))
    return head + ("<p>\n" if sgml else "") + body + ("</p>\n" if sgml else "") + "</doc>\n</refset>\n"


def write_iwslt14(folder: Path, train: Pairs, test: Pairs) -> None:
    """de-en.tgz as wit3 publishes it: train.tags.de-en.{de,en} and the five XML test sets."""
    folder.mkdir(parents=True, exist_ok=True)
    sets = ["TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012"]
    with tarfile.open(folder / "de-en.tgz", "w:gz") as tar:
        for side, lang in enumerate(("de", "en")):
            add_member(tar, f"de-en/train.tags.de-en.{lang}", ted_tags([p[side] for p in train], f"Title {lang}"))
            for index, name in enumerate(sets):
                chunk = [p[side] for p in test[index::len(sets)]]
                add_member(tar, f"de-en/IWSLT14.{name}.de-en.{lang}.xml", segments(chunk, lang))


def write_wmt_like(folder: Path, train: Pairs, valid: Pairs, test: Pairs) -> None:
    """(en, de) pairs in WMT's layouts: a tgz of plain files, a tsv.gz, a tar holding .gz members, SGML."""
    folder.mkdir(parents=True, exist_ok=True)
    half = len(train) // 3
    with tarfile.open(folder / "training.tgz", "w:gz") as tar:
        for side, lang in enumerate(("en", "de")):
            add_member(tar, f"training/corpus.de-en.{lang}", "".join(p[side] + "\n" for p in train[:half]))
            add_member(tar, f"dev/newstest.{lang}", "".join(p[side] + "\n" for p in valid))
            add_member(tar, f"test/newstest-src.{lang}.sgm" if lang == "en" else f"test/newstest-ref.{lang}.sgm",
                       segments([p[side] for p in test], lang, sgml=True))
    (folder / "news.de-en.tsv.gz").write_bytes(gzip.compress("".join(
        f"{de}\t{en}\n" for en, de in train[half:2 * half]).encode()))
    with tarfile.open(folder / "giga.tar", "w") as tar:
        for side, lang in enumerate(("en", "de")):
            add_member(tar, f"giga.{lang}.gz", gzip.compress("".join(p[side] + "\n" for p in train[2 * half:]).encode()))


WMT_LIKE_SPEC = {
    "train": [{"files": "training.tgz:training/corpus.de-en.{lang}", "format": "plain"},
              {"files": "news.de-en.tsv.gz", "format": "tsv", "columns": ["de", "en"]},
              {"files": "giga.tar:giga.{lang}.gz", "format": "plain"}],
    "valid": [{"files": "training.tgz:dev/newstest.{lang}", "format": "plain"}],
    "test": [{"files": {"en": "training.tgz:test/newstest-src.en.sgm", "de": "training.tgz:test/newstest-ref.de.sgm"},
              "format": "segments"}],
}
