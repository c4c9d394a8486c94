"""Resumable multi-stage jobs: each finished stage's result is stored atomically; re-running skips it."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from hat.io import atomic_write_json


class StageRunner:
    """Runs ``(name, function)`` stages in order; ``results[name]`` is what each returned (plus ``seconds``)."""

    def __init__(self, state_file: str | Path, log: logging.Logger) -> None:
        self.state_file = Path(state_file)
        self.log = log
        self.results: dict[str, Any] = self._read() if self.state_file.is_file() else {}

    def _read(self) -> dict[str, Any]:
        from hat.io import file_content, finite, load_json

        results = load_json(self.state_file, "stage record")
        with file_content(self.state_file, "stage record"):
            if not isinstance(results, dict) or not all(isinstance(r, dict) for r in results.values()):
                raise ValueError("expected a mapping of stage name to its result")
            for name, result in results.items():
                finite(result["seconds"], f"{name}.seconds", minimum=0)
        return results

    def run(self, stages: Sequence[tuple[str, Callable[[], dict]]]) -> dict[str, Any]:
        for number, (name, stage) in enumerate(stages, start=1):
            if name in self.results:
                self.log.info("[%d/%d] %s: done already (%.1f s), skipping", number, len(stages), name,
                              self.results[name]["seconds"])
                continue
            start = time.time()
            result = stage()
            result["seconds"] = round(time.time() - start, 1)
            self.results[name] = result
            atomic_write_json(self.state_file, self.results)
            self.log.info("[%d/%d] %s: %s (%.1f s)", number, len(stages), name, result.get("summary", "done"),
                          result["seconds"])
        return self.results
