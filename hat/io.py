"""The one place where HAT reads and writes its own files.

Reading: YAML without aliases, JSON without NaN, and :func:`file_content` to turn a file of the
right syntax but the wrong shape into one :class:`HatError` line. Writing: atomic, with the
user's umask, after :func:`check_output_dir` has proved the destination writable.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

from hat.errors import HatError

MAX_TEXT_BYTES = 64 << 20  # a config, predictor or state file larger than this is not one of ours


# ---- reading ------------------------------------------------------------------------------------
def read_text(path: str | Path, what: str) -> str:
    """UTF-8 text of ``path``; a missing, unreadable, huge or binary file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise HatError(f"{what} not found", path)
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise HatError(f"{what} is larger than {MAX_TEXT_BYTES >> 20} MiB", path)
        data = path.read_bytes()
    except OSError as err:
        raise HatError(f"cannot read {what}: {err.strerror or err}", path) from None
    if b"\x00" in data:
        raise HatError(f"{what} is a binary file, not text", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise HatError(f"{what} is not UTF-8 text (byte {err.start})", path) from None


def _no_alias_loader() -> Any:
    """A ``yaml.SafeLoader`` that refuses aliases: nested aliases expand exponentially ("billion laughs").

    Built on first use, so modules that read no YAML (an onnxruntime measuring device) need no pyyaml.
    """
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed", event.start_mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def parse_yaml(text: str, path: str | Path | None = None) -> Any:
    """YAML text -> Python data (safe types only, no aliases); errors are one line."""
    import yaml

    try:
        return yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise HatError(f"malformed YAML: {' '.join(str(err).split())}", path) from None
    except RecursionError:
        raise HatError("malformed YAML: nested too deeply", path) from None
    except ValueError as err:  # e.g. an integer of thousands of digits
        raise HatError(f"malformed YAML: {' '.join(str(err).split())[:120]}", path) from None


def load_yaml(path: str | Path, what: str) -> Any:
    """Read a YAML file; an empty file is an error."""
    data = parse_yaml(read_text(path, what), path)
    if data is None:
        raise HatError(f"{what} is empty", path)
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number HAT accepts")


def parse_json(text: str, path: str | Path | None = None, what: str = "file") -> Any:
    """JSON text -> Python data; NaN and Infinity are refused (they only ever mean corruption here)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as err:
        raise HatError(f"{what} is not valid JSON ({' '.join(str(err).split())})", path) from None


def load_json(path: str | Path, what: str) -> Any:
    return parse_json(read_text(path, what), path, what)


@contextlib.contextmanager
def file_content(path: str | Path | None, what: str) -> Iterator[None]:
    """Turn a file's unexpected shape (a missing key, a string for a number ...) into one line.

    Code reading loaded JSON/YAML inside this block may index and convert freely.
    """
    try:
        yield
    except HatError as err:
        if err.path is None:  # a check deeper down that does not know the file
            raise HatError(str(err), path) from None
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as err:
        detail = f"missing key {err}" if isinstance(err, KeyError) else " ".join(str(err).split())[:200]
        raise HatError(f"{what} has unexpected content ({detail})", path) from None


def finite(value: Any, name: str, *, minimum: float | None = None, positive: bool = False) -> float:
    """``value`` as a float that is finite (and >= ``minimum``, or > 0): else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or (minimum is not None and number < minimum) or (positive and number <= 0):
        bound = " > 0" if positive else (f" >= {minimum:g}" if minimum is not None else "")
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return number


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- writing ------------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create ``path`` (a folder) if needed and prove it writable, before any long work starts."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HatError(f"{what} is a file, not a folder", path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".hat-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise HatError(f"cannot write to {what}: {err.strerror or err}", path) from None
    return path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """The folder of ``path`` is writable and ``path`` itself is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise HatError(f"{what} is a folder, not a file", path)
    check_output_dir(path.parent if str(path.parent) else Path("."), f"folder of the {what}")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of it.

    The file gets the permissions a plain ``open(path, "w")`` would (0666 less the umask).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise HatError(f"cannot write: {err.strerror or err}", path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise HatError(f"cannot write: {err.strerror or err}", path) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """JSON with NaN refused: a non-finite number in one of our files is a bug to surface, not save."""
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)
    except ValueError as err:
        raise HatError(f"refusing to write a non-finite number ({err})", path) from None
    atomic_write_text(path, text + "\n")


def safe_file_name(name: str) -> str:
    """``name`` reduced to letters, digits, ``.``, ``_`` and ``-``: never a path, never hidden."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).lstrip(".")
    return cleaned[:100] or "unnamed"
