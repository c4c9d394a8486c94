"""fairseq's dictionary format, read without fairseq or torch (runs on a device with only onnxruntime)."""
from __future__ import annotations

from pathlib import Path

from hat.errors import HatError


class Dictionary:
    """fairseq's dictionary text format (``symbol count`` per line after 4 specials), read without fairseq."""

    SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols
        self.index = {s: i for i, s in enumerate(symbols)}
        self.bos, self.pad, self.eos, self.unk = 0, 1, 2, 3

    @classmethod
    def load(cls, path: str | Path) -> "Dictionary":
        from hat.io import read_text

        path = Path(path)
        symbols = list(cls.SPECIALS)
        for number, line in enumerate(read_text(path, "dictionary file").splitlines(), start=1):
            parts = line.rstrip().rsplit(" ", 1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                if line.strip().endswith("#fairseq:overwrite"):
                    parts = line.rsplit(" ", 2)[:1] + ["0"]
                else:
                    raise HatError(f"line {number}: expected 'symbol count', got {line[:80]!r}", path)
            symbols.append(parts[0])
        return cls(symbols)

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, pieces: list[str]) -> list[int]:
        return [self.index.get(p, self.unk) for p in pieces] + [self.eos]

    def decode(self, ids: list[int]) -> list[str]:
        return [self.symbols[i] for i in ids if i not in (self.bos, self.pad, self.eos)]
