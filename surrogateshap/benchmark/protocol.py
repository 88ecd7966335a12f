"""The evaluation protocol's coalitions: which test coalitions a task's ground truth holds.

Retrained test coalitions at alpha = 0.25 / 0.5 / 0.75 (LDS), drawn with
:func:`surrogateshap.metrics.sample_test_coalitions` and the seeds of ``LDS_SETS``, so a
benchmark rebuilds the very same sets with ``lds_test_coalitions(n)``; the empty and
full coalitions (anchors, and the removal baseline), and leave-one-out (the LOO
baseline). ``surrogateshap build-table --task T`` retrains them into the task's table
(:func:`surrogateshap.tasks.reference.build_table`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from surrogateshap.metrics import sample_test_coalitions

__all__ = ["LDS_SETS", "RETRAIN_SEEDS", "lds_test_coalitions", "ground_truth_coalitions", "lds_ground_truth",
           "read_coalitions", "protocol_note", "table_counts", "counts_markdown", "CARD_MARKERS",
           "update_card"]

#: alpha -> (number of test coalitions, sample_test_coalitions seed)
LDS_SETS = {0.5: (100, 2050), 0.25: (50, 2025), 0.75: (50, 2075)}
#: retraining seeds of the shipped tables
RETRAIN_SEEDS = (0, 1)


def lds_test_coalitions(n: int, sets=None) -> dict[float, np.ndarray]:
    """alpha -> boolean (m, n) test coalitions, exactly as the shipped tables hold them."""
    sets = LDS_SETS if sets is None else sets
    return {a: sample_test_coalitions(n, alpha=a, m=m, seed=s) for a, (m, s) in sets.items()}


def lds_ground_truth(table, utility: str, alpha: float, sets=None):
    """(masks (m, n), utilities (n_seeds, m)) of the alpha test set held by a (partial)
    reference table: the test coalitions that every one of the table's seeds has
    retrained, in draw order. The counterpart of ``CoalitionTable.lds_ground_truth``
    for a table that is not every coalition."""
    masks, utils = table.lds_ground_truth(utility, alpha, lds_test_coalitions(table.n_players, sets)[alpha])
    if len(masks) == 0:
        raise ValueError(f"the table holds none of the alpha = {alpha} test coalitions for all its seeds")
    return masks, utils


def ground_truth_coalitions(n: int, sets=None, loo: bool = True, first: int | None = None) -> np.ndarray:
    """The table's coalitions in build order: empty and full, the LDS sets (alpha 0.5
    first), then leave-one-out. Duplicates are kept once. ``first``: only the first
    ``first`` coalitions of each LDS set (a prefix in draw order, so every alpha gets
    test coalitions early and a later run extends the very same sets)."""
    lds = [m[:first] for m in lds_test_coalitions(n, sets).values()]
    rows = [np.zeros((1, n), bool), np.ones((1, n), bool), *lds]
    if loo:
        rows.append(~np.eye(n, dtype=bool))
    masks = np.concatenate(rows)
    _, first = np.unique(masks, axis=0, return_index=True)
    return masks[np.sort(first)]


def read_coalitions(path, n: int) -> np.ndarray:
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    bad = [ln for ln in lines if len(ln) != n or set(ln) - {"0", "1"}]
    if bad:
        raise ValueError(f"{path}: coalitions must be {n}-character bit strings; bad line {bad[0]!r}")
    return np.array([[c == "1" for c in ln] for ln in lines], dtype=bool).reshape(-1, n)


def protocol_note(loo: bool = True, extra: bool = False) -> str:
    """What a protocol table's coalitions are, for its header."""
    sets = ", ".join(f"alpha {al}: m={m}, seed={s}" for al, (m, s) in LDS_SETS.items())
    return (f"coalitions: empty, full, LDS test sets sample_test_coalitions(n, alpha, m, seed) [{sets}]"
            + (", leave-one-out" if loo else "") + (", extra" if extra else ""))


def table_counts(table):
    """What a table holds, per kind of coalition and seed: the anchors (empty, full), each
    LDS test set of the protocol (of its size), leave-one-out, and the rest (estimators'
    coalitions, removal sets)."""
    import pandas as pd

    from surrogateshap.game import coalition_key

    n = table.n_players
    kinds = [("empty and full (of 2)", [np.zeros(n, bool), np.ones(n, bool)])]
    for alpha, masks in lds_test_coalitions(n).items():
        kinds.append((f"LDS test set, alpha {alpha:g} (of {len(masks)})", list(masks)))
    kinds.append((f"leave-one-out (of {n})", list(~np.eye(n, dtype=bool))))
    named = set()
    rows = []
    for label, masks in kinds:
        keys = list(dict.fromkeys(coalition_key(m) for m in masks))
        named |= set(keys)
        rows.append({"coalitions": label, **{f"seed {s}": int(table.held_on(
            np.array([[c == "1" for c in k] for k in keys], bool), s).sum()) for s in table.seeds}})
    other = {"coalitions": "other: estimators' coalitions, removal sets"}
    total = {"coalitions": "total"}
    for s in table.seeds:
        keys = set(table.frame.loc[table.frame["seed"] == s, "coalition"])
        other[f"seed {s}"] = len(keys - named)
        total[f"seed {s}"] = len(keys)
    return pd.DataFrame([*rows, other, total])


def counts_markdown(table) -> str:
    """The counts of :func:`table_counts` as a markdown table (what a card shows)."""
    t = table_counts(table)
    cols = list(t.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in t.to_numpy().tolist()]
    return "\n".join(lines)


#: a card's block of table counts lies between these lines (kept true to the file by a test)
CARD_MARKERS = ("<!-- table counts: begin (surrogateshap table-counts) -->",
                "<!-- table counts: end -->")


def update_card(card_text: str, table) -> str:
    """The card with its counts block replaced by the table's counts now."""
    begin, end = CARD_MARKERS
    if begin not in card_text or end not in card_text:
        raise ValueError(f"the card has no counts block (the lines {begin!r} and {end!r})")
    head, rest = card_text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{counts_markdown(table)}\n{end}{tail}"

