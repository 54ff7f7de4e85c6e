"""Atomic file writes: results never appear half-written."""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process umask, read without changing it where Linux shows it (``/proc/self/status``);
    elsewhere set and restored at once (``os.umask`` is the only portable reader)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def inside(path: str | Path, root: str | Path, what: str, depth: int | None = None) -> Path:
    """``path`` when it lies under ``root`` (exactly ``depth`` components below it, when given),
    else :class:`~nqsbench.errors.UnsafePathError`.

    Lexical: ``path`` must start with ``root``'s components and the rest must hold no ``..``
    (names from input, e.g. parameter names, are what could smuggle one in). Links are not
    followed, so a results folder or cache that is itself a link, or holds links, still works."""
    from .errors import UnsafePathError

    p, r = Path(path), Path(root)
    n = len(r.parts)
    if (p.parts[:n] != r.parts or len(p.parts) == n or ".." in p.parts[n:]
            or (depth is not None and len(p.parts) != n + depth)):
        raise UnsafePathError(f"{what} {p} lies outside {r}: names that make paths (parameter "
                              "names, system ids, labels) must be plain identifiers without '/' or '..'")
    return p


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the temporary file onto ``path``.

    The temporary file lives in the target directory so the rename is atomic on POSIX. The file
    gets mode ``0666 & ~umask``, as ``open`` would give it (``mkstemp`` makes it 0600, which a
    results folder shared by a group cannot use).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def read_toml(path: str | Path, error: type[Exception], what: str) -> dict:
    """Parse a TOML file; a missing or malformed file raises ``error`` with one line naming the
    path ("no such <what>" / "not valid TOML: ...")."""
    import tomllib

    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
