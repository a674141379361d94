"""Which code made a benchmark record: the git tree of ``ebreg/`` and the checked-out commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def library_version() -> str:
    """The git tree hash of ``ebreg/`` (plus ``+changes`` when it differs from that tree), or ``unknown``."""
    try:
        return _git("rev-parse", "HEAD:ebreg") + ("+changes" if _git("status", "--porcelain", "--", "ebreg") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def head_commit() -> str:
    """The short hash of the checked-out commit, or ``unknown``."""
    try:
        return _git("rev-parse", "--short", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
