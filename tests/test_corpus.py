"""Corpora extracted from downloads laid out as IWSLT'14 and WMT publish them (hat.data.corpus)."""
from __future__ import annotations

import json

import pytest

from hat.data.corpus import extract_corpus
from hat.errors import HatError
from hat.io import load_yaml
from tests.conftest import ROOT
from tests.corpus_archives import WMT_LIKE_SPEC, write_iwslt14, write_wmt_like

PAIRS = [(f"Satz Nummer {i} & mehr <x>", f"Sentence number {i} & more <x>") for i in range(60)]  # (de, en)
EN_DE = [(en, de) for de, en in PAIRS]


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_iwslt14_recipe_extracts_train_held_out_valid_and_five_test_sets(tmp_path):
    recipe = load_yaml(ROOT / "experiments" / "recipes" / "iwslt14_de_en.yaml", "recipe")
    long_pair = (" ".join(["wort"] * 200), " ".join(["word"] * 200))  # over max_words: dropped
    unbalanced = ("ein", "one two three four")  # ratio above 1.5: dropped
    write_iwslt14(tmp_path / "dl", train=[*PAIRS, long_pair, unbalanced], test=PAIRS[:25])
    stats = extract_corpus(recipe["downloads"], "de", "en", tmp_path / "dl", tmp_path / "raw")
    # 60 sentences + the title line; every 23rd kept pair is held out for valid.
    assert stats == {"train": {"pairs": 59, "dropped": 2}, "valid": {"pairs": 2, "dropped": 0},
                     "test": {"pairs": 25, "dropped": 0}}
    train_de, train_en = lines(tmp_path / "raw" / "train.de"), lines(tmp_path / "raw" / "train.en")
    assert train_de[0] == "title de" and train_en[0] == "title en"  # lowercased, tags removed
    assert train_en[1] == "sentence number 0 & more <x>"
    assert not any(line.startswith("<") for line in train_de + train_en)
    assert lines(tmp_path / "raw" / "valid.en") == ["sentence number 21 & more <x>", "sentence number 44 & more <x>"]
    test_en = lines(tmp_path / "raw" / "test.en")
    assert test_en[0] == "sentence number 0 & more <x>" and len(test_en) == len(lines(tmp_path / "raw" / "test.de"))
    assert json.loads((tmp_path / "raw" / "corpus.json").read_text()) == stats


def test_wmt_layouts_plain_tsv_gz_members_and_sgml_keep_their_pairs_aligned(tmp_path):
    write_wmt_like(tmp_path / "dl", train=EN_DE, valid=EN_DE[:7], test=EN_DE[7:12])
    stats = extract_corpus(WMT_LIKE_SPEC, "en", "de", tmp_path / "dl", tmp_path / "raw")
    assert stats["train"]["pairs"] == 60 and stats["valid"]["pairs"] == 7 and stats["test"]["pairs"] == 5
    for split in ("train", "valid", "test"):
        en, de = lines(tmp_path / "raw" / f"{split}.en"), lines(tmp_path / "raw" / f"{split}.de")
        assert [e.split()[2] for e in en] == [d.split()[2] for d in de]  # the same number on both sides
    assert lines(tmp_path / "raw" / "test.de")[0] == "Satz Nummer 7 & mehr <x>"  # entities decoded
    assert lines(tmp_path / "raw" / "train.en")[-1] == "Sentence number 59 & more <x>"


def test_missing_archive_member_and_misaligned_files_are_one_line_errors(tmp_path):
    write_wmt_like(tmp_path / "dl", train=EN_DE, valid=EN_DE[:7], test=EN_DE[7:12])
    missing = {**WMT_LIKE_SPEC, "train": [{"files": "europarl.tgz:europarl.{lang}", "format": "plain"}]}
    with pytest.raises(HatError, match=r"europarl\.tgz: not found"):
        extract_corpus(missing, "en", "de", tmp_path / "dl", tmp_path / "raw")
    typo = {**WMT_LIKE_SPEC, "valid": [{"files": "training.tgz:dev/newstest2.{lang}", "format": "plain"}]}
    with pytest.raises(HatError, match=r"no member dev/newstest2\.en \(close: dev/newstest\.en"):
        extract_corpus(typo, "en", "de", tmp_path / "dl", tmp_path / "raw")
    crossed = {**WMT_LIKE_SPEC, "valid": [{"files": {"en": "training.tgz:dev/newstest.en",
                                                      "de": "training.tgz:training/corpus.de-en.de"},
                                            "format": "plain"}]}
    with pytest.raises(HatError, match="different numbers of sentences"):
        extract_corpus(crossed, "en", "de", tmp_path / "dl", tmp_path / "raw")
    assert not (tmp_path / "raw" / "corpus.json").exists() and not list((tmp_path / "raw").glob("*.partial"))
    with pytest.raises(HatError, match="tsv source is one file with columns naming en and de"):
        extract_corpus({**WMT_LIKE_SPEC, "train": [{"files": "news.de-en.tsv.gz", "format": "tsv"}]},
                       "en", "de", tmp_path / "dl", tmp_path / "raw")
