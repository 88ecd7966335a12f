"""Provenance of the files the project ships (reference tables, regression figures):
which commit of which checkout made them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["git_commit"]


def git_commit(root: str | os.PathLike | None = None) -> str:
    """The checkout's commit (with "-dirty" when tracked files changed): provenance of
    reference files."""
    root = root or Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=root, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=root, timeout=10).stdout.strip()
        return (head or "unknown") + ("-dirty" if dirty else "")
    except Exception:  # noqa: BLE001 - provenance only
        return "unknown"
