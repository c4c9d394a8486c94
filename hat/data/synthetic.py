"""A deterministic synthetic English->German-like corpus that needs no download.

A small synchronous grammar generates each pair, with what makes translation non-trivial:
case/gender/number agreement of articles and adjectives, verb-second inversion after a fronted
adverb, participles moved to the end in the perfect, and verb-final subordinate clauses.
"""
from __future__ import annotations

import random
from pathlib import Path

from hat.io import atomic_write_text

def table_rows(text: str) -> list[tuple[str, ...]]:
    """Rows of a whitespace-separated table, one tuple a line."""
    return [tuple(line.split()) for line in text.strip().splitlines()]


# noun: (english singular, english plural, german singular, german plural, gender)
NOUNS = [
    ("dog", "dogs", "hund", "hunde", "m"), ("cat", "cats", "katze", "katzen", "f"),
    ("house", "houses", "haus", "häuser", "n"), ("man", "men", "mann", "männer", "m"),
    ("woman", "women", "frau", "frauen", "f"), ("child", "children", "kind", "kinder", "n"),
    ("car", "cars", "auto", "autos", "n"), ("tree", "trees", "baum", "bäume", "m"),
    ("street", "streets", "straße", "straßen", "f"), ("book", "books", "buch", "bücher", "n"),
    ("table", "tables", "tisch", "tische", "m"), ("door", "doors", "tür", "türen", "f"),
    ("bird", "birds", "vogel", "vögel", "m"), ("flower", "flowers", "blume", "blumen", "f"),
    ("boat", "boats", "boot", "boote", "n"), ("garden", "gardens", "garten", "gärten", "m"),
    ("city", "cities", "stadt", "städte", "f"), ("horse", "horses", "pferd", "pferde", "n"),
    ("teacher", "teachers", "lehrer", "lehrer", "m"), ("girl", "girls", "mädchen", "mädchen", "n"),
    ("ball", "balls", "ball", "bälle", "m"), ("bridge", "bridges", "brücke", "brücken", "f"),
    ("window", "windows", "fenster", "fenster", "n"), ("friend", "friends", "freund", "freunde", "m"),
    ("river", "rivers", "fluss", "flüsse", "m"), ("lamp", "lamps", "lampe", "lampen", "f"),
    ("picture", "pictures", "bild", "bilder", "n"), ("chair", "chairs", "stuhl", "stühle", "m"),
    ("school", "schools", "schule", "schulen", "f"), ("apple", "apples", "apfel", "äpfel", "m"),
]
ADJECTIVES = [
    ("big", "groß"), ("small", "klein"), ("old", "alt"), ("young", "jung"), ("red", "rot"),
    ("green", "grün"), ("fast", "schnell"), ("quiet", "leis"), ("happy", "froh"), ("new", "neu"),
    ("dark", "dunkl"), ("beautiful", "schön"), ("tired", "müd"), ("brave", "tapfer"),
]
# verb: (en 3sg, en plural, en participle, de 3sg, de plural, de participle)
VERBS = table_rows("""
    sees    see    seen     sieht    sehen    gesehen
    finds   find   found    findet   finden   gefunden
    paints  paint  painted  malt     malen    gemalt
    buys    buy    bought   kauft    kaufen   gekauft
    follows follow followed folgt    folgen   gefolgt
    visits  visit  visited  besucht  besuchen besucht
    carries carry  carried  trägt    tragen   getragen
    hears   hear   heard    hört     hören    gehört
    likes   like   liked    mag      mögen    gemocht
    builds  build  built    baut     bauen    gebaut
    washes  wash   washed   wäscht   waschen  gewaschen
    draws   draw   drawn    zeichnet zeichnen gezeichnet
""")
PREPOSITIONS = [("in", "in"), ("with", "mit"), ("near", "bei"), ("behind", "hinter"), ("from", "von")]
ADVERBS = [("today", "heute"), ("often", "oft"), ("now", "jetzt"), ("sometimes", "manchmal")]
NUMBERS = [("two", "zwei"), ("three", "drei"), ("four", "vier"), ("many", "viele")]
CONJUNCTIONS = [("because", "weil"), ("while", "während"), ("although", "obwohl")]

DEFINITE = {
    "nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
    "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
    "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
}
INDEFINITE = {
    "nom": {"m": "ein", "f": "eine", "n": "ein"},
    "acc": {"m": "einen", "f": "eine", "n": "ein"},
    "dat": {"m": "einem", "f": "einer", "n": "einem"},
}


def _adjective_ending(article: str, case: str, gender: str) -> str:
    """German adjective endings after a definite article, an indefinite one, or none (plural)."""
    if gender == "pl":
        return "en" if article == "definite" or case == "dat" else "e"
    if case == "dat":
        return "en"
    if article == "definite":
        return "en" if (case == "acc" and gender == "m") else "e"
    if case == "acc" and gender == "m":
        return "en"
    return {"m": "er", "f": "e", "n": "es"}[gender]


class Lexicon:
    """The words a corpus draws from: the first ``fraction`` of each list (at least 4 of each)."""

    def __init__(self, fraction: float = 1.0) -> None:
        def take(words: list) -> list:
            return words[: max(4, round(len(words) * fraction))]

        self.nouns, self.adjectives, self.verbs = take(NOUNS), take(ADJECTIVES), take(VERBS)


def _noun_phrase(rng: random.Random, case: str, lexicon: Lexicon) -> tuple[list[str], list[str], bool]:
    """(english words, german words, plural?)"""
    en_sg, en_pl, de_sg, de_pl, gender = rng.choice(lexicon.nouns)
    plural = rng.random() < 0.3
    adjective = rng.choice(lexicon.adjectives) if rng.random() < 0.5 else None
    if plural:
        article = "definite" if rng.random() < 0.5 else "number"
        if article == "definite":
            en, de = ["the"], [DEFINITE[case]["pl"]]
        else:
            number = rng.choice(NUMBERS)
            en, de = [number[0]], [number[1]]
        if adjective:
            ending = _adjective_ending("definite" if article == "definite" else "none", case, "pl")
            en.append(adjective[0])
            de.append(adjective[1] + ending)
        noun_de = de_pl + ("n" if case == "dat" and not de_pl.endswith(("n", "s")) else "")
        return en + [en_pl], de + [noun_de], True
    article = "definite" if rng.random() < 0.6 else "indefinite"
    en = ["the"] if article == "definite" else ["an" if (adjective or (en_sg,))[0][0] in "aeiou" else "a"]
    de = [(DEFINITE if article == "definite" else INDEFINITE)[case][gender]]
    if adjective:
        en.append(adjective[0])
        de.append(adjective[1] + _adjective_ending(article, case, gender))
    return en + [en_sg], de + [de_sg], False


def _clause(rng: random.Random, subordinate: bool, fronted: tuple[str, str] | None,
            lexicon: Lexicon) -> tuple[list[str], list[str]]:
    subj_en, subj_de, plural = _noun_phrase(rng, "nom", lexicon)
    obj_en, obj_de, _ = _noun_phrase(rng, "acc", lexicon)
    verb = rng.choice(lexicon.verbs)
    perfect = rng.random() < 0.35
    pp_en, pp_de = [], []
    if rng.random() < 0.4:
        prep = rng.choice(PREPOSITIONS)
        np_en, np_de, _ = _noun_phrase(rng, "dat", lexicon)
        pp_en, pp_de = [prep[0]] + np_en, [prep[1]] + np_de
    if perfect:
        aux_en, aux_de = ("have" if plural else "has"), ("haben" if plural else "hat")
        en = subj_en + [aux_en, verb[2]] + obj_en + pp_en
        if subordinate:
            de = subj_de + obj_de + pp_de + [verb[5], aux_de]
        elif fronted:
            de = [aux_de] + subj_de + obj_de + pp_de + [verb[5]]
        else:
            de = subj_de + [aux_de] + obj_de + pp_de + [verb[5]]
    else:
        v_en, v_de = (verb[1], verb[4]) if plural else (verb[0], verb[3])
        en = subj_en + [v_en] + obj_en + pp_en
        if subordinate:
            de = subj_de + obj_de + pp_de + [v_de]
        elif fronted:
            de = [v_de] + subj_de + obj_de + pp_de
        else:
            de = subj_de + [v_de] + obj_de + pp_de
    if fronted:
        en, de = [fronted[0]] + en, [fronted[1]] + de
    return en, de


def sentence_pair(rng: random.Random, lexicon: Lexicon | None = None) -> tuple[str, str]:
    lexicon = lexicon or Lexicon()
    fronted = rng.choice(ADVERBS) if rng.random() < 0.25 else None
    en, de = _clause(rng, subordinate=False, fronted=fronted, lexicon=lexicon)
    if rng.random() < 0.3:
        conj = rng.choice(CONJUNCTIONS)
        sub_en, sub_de = _clause(rng, subordinate=True, fronted=None, lexicon=lexicon)
        en, de = en + [",", conj[0]] + sub_en, de + [",", conj[1]] + sub_de
    return " ".join(en + ["."]), " ".join(de + ["."])


def generate_corpus(
    out_dir: str | Path, train: int = 20000, valid: int = 500, test: int = 500, seed: int = 1,
    lexicon_fraction: float = 1.0,
) -> dict[str, int]:
    """Write ``{train,valid,test}.{en,de}`` to ``out_dir``; the same seed gives the same files.

    ``lexicon_fraction`` < 1 uses fewer nouns, adjectives and verbs: a corpus that is learnt faster.
    """
    rng = random.Random(seed)
    lexicon = Lexicon(lexicon_fraction)
    out = Path(out_dir)
    counts = {}
    for split, n in (("train", train), ("valid", valid), ("test", test)):
        pairs = [sentence_pair(rng, lexicon) for _ in range(n)]
        atomic_write_text(out / f"{split}.en", "".join(p[0] + "\n" for p in pairs))
        atomic_write_text(out / f"{split}.de", "".join(p[1] + "\n" for p in pairs))
        counts[split] = n
    return counts
