"""Atomic writes of files and folders: a crash mid-write leaves the old one or none, never
half of one. What they write gets the permissions an ordinary ``open()`` or ``mkdir()`` would
give under the process's umask (0644 files, 0755 folders under umask 0022), and a path that is
a symbolic link is refused rather than replaced."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_folder", "write_json", "write_text", "umask", "folder_written_as"]


def umask() -> int:
    """The process's umask: read from ``/proc/self/status`` where Linux gives it, else by setting
    it and putting it back (which other threads could see for an instant)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def folder_written_as(path: Path, marker: str, fmt: str) -> bool:
    """Whether folder ``path`` is empty, or its JSON file ``marker`` says ``"format": fmt``: the
    folders an atomic writer of that format may replace (another tool's files never are)."""
    if not any(path.iterdir()):
        return True
    try:
        meta = json.loads((path / marker).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == fmt


def _target(path: str | Path) -> Path:
    """``path`` made absolute (so that ``.`` has a name and a parent), refused if it is a link."""
    path = Path(os.path.abspath(path))
    if path.is_symlink():
        raise FileExistsError(f"{path} is a symbolic link; give the real path")
    return path


def _temporary_prefix(path: Path) -> str:
    """``.NAME.PID.``: temporaries beside ``path`` name their writer, so that the next writer can
    remove those that a killed process left behind (:func:`_remove_abandoned`)."""
    return f".{path.name}.{os.getpid()}."


def _remove_abandoned(path: Path) -> None:
    """Delete the temporaries beside ``path`` whose writing process no longer exists."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = _target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_folder(path: str | Path, write: Callable[[Path], None], may_replace: Callable[[Path], bool]) -> Path:
    """Call ``write(tmp)`` on a new temporary folder beside ``path``, then move it to ``path``.

    An existing ``path`` is replaced only if ``may_replace(path)`` (else ``FileExistsError``):
    it is first renamed aside, then the new folder renamed in, then the old one deleted, so
    at any moment ``path`` is the complete old folder, the complete new one, or absent.
    """
    path = _target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not (path.is_dir() and may_replace(path)):
        raise FileExistsError(f"{path} exists and is not a folder this would replace; choose another path")
    _remove_abandoned(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8), atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=True) + "\n")
