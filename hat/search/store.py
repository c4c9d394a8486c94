"""Every SubTransformer a search has scored, shared by evolution and random search.

The store is an append-only journal (JSON lines): a header naming the fitness, then one line per
scored SubTransformer (archid, config, loss), flushed and synced as it is scored. A run killed
mid-write leaves at most a torn last line, which is dropped on reading. A later run with the same
fitness (checkpoint, data, split, subset) reuses every loss instead of evaluating it again.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hat.errors import HatError
from hat.io import file_content, finite, read_text
from hat.space import SearchSpace, SubTransformerConfig

STORE_FORMAT = "hat-search-store-v1"


@dataclass(frozen=True)
class Scored:
    config: SubTransformerConfig
    loss: float


class SearchStore:
    """archid -> (config, loss); in memory only when ``path`` is ``None``."""

    def __init__(self, path: str | Path | None = None, fitness: dict[str, Any] | None = None,
                 space: SearchSpace | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.fitness = dict(fitness or {})
        self._scored: dict[str, Scored] = {}
        if self.path is not None and self.path.is_file():
            self._load(space)
        elif self.path is not None:
            self._append({"format": STORE_FORMAT, "fitness": self.fitness})

    def __len__(self) -> int:
        return len(self._scored)

    def __contains__(self, archid: str) -> bool:
        return archid in self._scored

    def loss(self, archid: str) -> float | None:
        """The stored loss of ``archid``, or ``None`` when it was never scored."""
        found = self._scored.get(archid)
        return None if found is None else found.loss

    def add(self, config: SubTransformerConfig, loss: float) -> None:
        """Record one scored SubTransformer (already known ones are left as they are)."""
        if not math.isfinite(loss):
            raise HatError(f"fitness returned {loss} for {config.archid}")
        if config.archid in self._scored:
            return
        self._scored[config.archid] = Scored(config, float(loss))
        if self.path is not None:
            self._append({"archid": config.archid, "config": config.to_dict(), "loss": float(loss)})

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _load(self, space: SearchSpace | None) -> None:
        path = self.path
        text = read_text(path, "search store")
        lines = text.split("\n")
        complete, torn = lines[:-1], lines[-1]  # text after the last newline: a write cut short
        if not complete:
            raise HatError("not a HAT search store (no header line)", path)
        with file_content(path, "search store"):
            header = json.loads(complete[0])
            if not isinstance(header, dict) or header.get("format") != STORE_FORMAT:
                raise ValueError("not a HAT search store")
            if self.fitness and header.get("fitness") != self.fitness:
                raise HatError("this store holds losses of another fitness (checkpoint, data, split or subset); "
                               "use another output folder", path)
            self.fitness = header.get("fitness") or self.fitness
            for line in complete[1:]:
                item = json.loads(line)
                config = SubTransformerConfig.from_dict(item["config"])
                if space is not None:
                    space.validate(config)
                if item["archid"] != config.archid:
                    raise ValueError(f"archid {item['archid']} does not match its config ({config.archid})")
                self._scored[config.archid] = Scored(config, finite(item["loss"], f"loss of {config.archid}"))
        if torn:
            with open(path, "r+", encoding="utf-8") as handle:  # drop the torn line before appending more
                handle.truncate(len(text.encode("utf-8")) - len(torn.encode("utf-8")))
