"""Data: the embedded synthetic corpus and preparation of parallel text for fairseq."""
from hat.data.synthetic import generate_corpus

__all__ = ["generate_corpus"]
