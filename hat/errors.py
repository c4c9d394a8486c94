"""User-facing errors: one clear line that names the file and the problem."""
from __future__ import annotations

from pathlib import Path


class HatError(Exception):
    """An error caused by user input (a file, a config, an option).

    The CLI prints ``hat: error: <message>`` on one line and exits with code 2,
    without a traceback. Library users can catch it like any exception.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
