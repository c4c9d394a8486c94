"""Resumable multi-stage jobs: each finished stage's result is stored atomically; re-running skips it."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from hat.errors import HatError
from hat.io import atomic_write_json


class StageRunner:
    """Runs ``(name, function)`` stages in order; ``results[name]`` is what each returned (plus ``seconds``)."""

    def __init__(self, state_file: str | Path, log: logging.Logger, settings: dict[str, Any] | None = None) -> None:
        self.state_file = Path(state_file)
        self.log = log
        self.results: dict[str, Any] = self._read() if self.state_file.is_file() else {}
        if settings is not None:
            self._check_settings(settings)

    def _check_settings(self, settings: dict[str, Any]) -> None:
        """Finished stages are reused only under the settings that made them (kept in settings.json)."""
        from hat.io import load_json

        path = self.state_file.with_name("settings.json")
        settings = json.loads(json.dumps(settings, default=str))  # as they read back from JSON
        if path.is_file() and self.results:
            stored = load_json(path, "run settings")
            changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
            if changed:
                first = changed[0]
                raise HatError(f"this run was made with other settings ({first}: {stored.get(first)!r} then, "
                               f"{settings.get(first)!r} now{', ...' if len(changed) > 1 else ''}); "
                               "use another output folder or delete this one", path)
        atomic_write_json(path, settings)

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
