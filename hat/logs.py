"""Short consoles, full log files.

The console shows HAT's own messages and every warning; fairseq's per-epoch lines, the model
printout and library deprecation warnings go only to the log file of the job that produced them
(``-v`` brings everything back to the console).
"""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

DETAIL = "hat.detail"  # HAT's own messages for the log file only, e.g. the full fairseq command line
FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"


class _ConsoleFilter(logging.Filter):
    """INFO from the loggers named in ``shown`` (prefixes); from everything else, warnings and errors."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose
        self.shown: tuple[str, ...] = ("hat",)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        if record.name == "py.warnings":  # library deprecation notices: for the log file
            return False
        if record.levelno >= logging.WARNING:
            return True
        return record.name.startswith(self.shown) and not record.name.startswith(DETAIL)


_console = _ConsoleFilter(verbose=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each message (it may be replaced)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_console(verbose: bool = False) -> None:
    """One stderr handler on the root logger, filtered as described in the module docstring."""
    _console.verbose = verbose
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(getattr(h, "_hat_console", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(_console)
        handler._hat_console = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    logging.captureWarnings(True)


@contextlib.contextmanager
def log_file(path: str | Path, console_shows: tuple[str, ...] | None = None) -> Iterator[Path]:
    """Everything logged inside the block also goes to ``path`` (appended: a resumed job keeps its
    history); ``console_shows`` narrows the console's INFO to these logger prefixes meanwhile."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    shown = _console.shown
    if console_shows is not None:
        _console.shown = console_shows
    try:
        with logging_redirect_tqdm():
            yield path
    finally:
        _console.shown = shown
        root.removeHandler(handler)
        handler.close()
