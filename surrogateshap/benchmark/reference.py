"""The regression reference: per-case figures aggregated over seeds, written and read."""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np

from surrogateshap._files import atomic_write
from surrogateshap.evaluation import GroundTruth, aggregate_figures
from surrogateshap.provenance import git_commit

__all__ = ["reference_entries", "write_reference", "read_reference", "ceiling_figures", "json_safe", "small_extras"]


def reference_entries(records: dict[str, list[dict]], fingerprints: dict[str, str]) -> dict:
    """Reference entries from per-seed figures grouped by case key.

    ``records`` maps a case key to the list of its seeds' figure dicts (each may carry
    a "seed"); ``fingerprints`` maps the key to its ground truth's fingerprint.
    """
    out = {}
    for key in sorted(records):
        figs = records[key]
        out[key] = {
            "truth": fingerprints.get(key),
            "seeds": sorted(int(f["seed"]) for f in figs if "seed" in f),
            "figures": aggregate_figures(figs),
        }
    return out


def json_safe(obj):
    """JSON-safe: numpy scalars to Python, nan/inf to None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


#: the most characters of JSON one estimator extra may take in a benchmark JSON
EXTRA_JSON_LIMIT = 2000


def small_extras(extra: dict, limit: int = EXTRA_JSON_LIMIT) -> dict:
    """The entries of an Attribution's ``extra`` worth keeping in a benchmark JSON: scalars,
    and lists and dicts of them (e.g. multifidelity's ``split``, what it bought of each
    fidelity) whose JSON takes at most ``limit`` characters. Arrays of per-player numbers
    and larger structures are left out: the values themselves are the Attribution's."""
    kept = {}
    for k, v in extra.items():
        v = json_safe(v)
        if not _plain(v):  # an array (per-player numbers), an object
            continue
        if isinstance(v, (int, float, str, bool)) or len(json.dumps(v)) <= limit:
            kept[str(k)] = v
    return kept


def _plain(v) -> bool:
    """Only None, scalars, and lists and string-keyed dicts of them."""
    if v is None or isinstance(v, (int, float, str, bool)):
        return True
    if isinstance(v, list):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def write_reference(path, entries: dict, command: str, scale: str, root=None, note: str = "") -> dict:
    """Write the regression reference file (entries from :func:`reference_entries`)."""
    from surrogateshap.evaluation import REGRESSION_RULES, SIGMA

    path = Path(path)
    root = Path(root) if root else path.resolve().parent
    doc = {
        "meta": {
            "command": command,
            "git_commit": git_commit(root),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "scale": scale,
            "tolerance": {
                "rule": "fail when worse than the reference mean by more than "
                        "max(sigma * seed_std, floor, rel_floor * |mean|)",
                "sigma": SIGMA,
                "figures": {k: {"higher_is_better": h, "floor": f, "rel_floor": r}
                            for k, (h, f, r) in REGRESSION_RULES.items()},
            },
            "note": note,
        },
        "cases": entries,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    for entry in doc["cases"].values():
        for fig in entry["figures"].values():
            for k in ("mean", "std", "tolerance"):
                if isinstance(fig.get(k), float) and math.isfinite(fig[k]):
                    fig[k] = float(f"{fig[k]:.6g}")
    doc = json_safe(doc)
    # one line per case keeps the file diffable: a changed figure is a changed line
    cases = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc["cases"].items())
    meta = json.dumps(doc["meta"], indent=2).replace("\n", "\n ")
    with atomic_write(path) as f:
        f.write(f'{{\n "meta": {meta},\n "cases": {{\n{cases}\n }}\n}}\n')
    return doc


def read_reference(path) -> dict:
    """A reference file; JSON nulls (nan when written) come back as nan. A file that is
    not one (not JSON, no ``cases`` of figures) raises one ``ValueError`` naming it."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path} is not a regression reference (a JSON file written by "
                         f"--update-reference): {e}") from None
    cases = doc.get("cases") if isinstance(doc, dict) else None
    if not isinstance(cases, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("figures"), dict)
            and all(isinstance(f, dict) for f in e["figures"].values()) for e in cases.values()):
        raise ValueError(f"{path} is not a regression reference: no 'cases' of figures "
                         "(write one with --update-reference)")
    for entry in cases.values():
        for fig in entry["figures"].values():
            for k in ("mean", "std", "tolerance"):
                if fig.get(k) is None:
                    fig[k] = float("nan")
    return doc


def ceiling_figures(truth: GroundTruth, fidelity: bool = False) -> dict:
    """The ground truth's own figures, the same for every case of a task and utility: the
    LDS of the exact values (``ceiling_lds_{alpha}_mean``) and of the additive fit
    (``ceiling_additive_lds_{alpha}_mean``), and with ``fidelity`` (a proxy-game case,
    whose proxy is built anyway) the proxy's fidelity to retraining (``proxy_spearman``,
    ``seed_spearman``, ``fidelity_coalitions``)."""
    return {**{f"ceiling_{k}": v for k, v in truth.ceiling().items()}, **(truth.fidelity() if fidelity else {})}
