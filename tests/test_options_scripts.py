"""Every study script answers ``--help`` with its usage and what it does, and does no work."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_help_prints_usage_and_does_no_work(script, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "SURROGATESHAP_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage" in res.stdout.lower(), res.stdout
    opening = " ".join(ast.get_docstring(ast.parse(script.read_text())).split()[:6])
    assert opening in " ".join(res.stdout.split()), "the help does not say what the script does"
    assert not any(cache.iterdir()), "--help did work: it wrote to the cache"
