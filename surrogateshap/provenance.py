"""Provenance of the files the project ships (reference tables, regression figures):
which commit of which checkout made them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["git_commit"]


def git_commit(root: str | os.PathLike | None = None, ignore=()) -> str:
    """The checkout's commit (with "-dirty" when tracked files changed): provenance of
    reference files. ``ignore``: files whose changes do not count (the file being
    written, whose earlier export would otherwise make its own next export dirty)."""
    root = root or Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=root, timeout=10).stdout.strip()
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             cwd=root, timeout=10).stdout.strip()
        skip = {str(Path(p).resolve()) for p in ignore}
        lines = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=root, timeout=10).stdout.splitlines()
        dirty = [ln for ln in lines if str((Path(top) / ln[3:].strip()).resolve()) not in skip]
        return (head or "unknown") + ("-dirty" if dirty else "")
    except Exception:  # noqa: BLE001 - provenance only
        return "unknown"
