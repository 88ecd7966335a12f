"""Turn a ``pytest benchmarks/ --benchmark-json out.json`` file into tables and plots.

    surrogateshap report out.json --out results/report
    surrogateshap report published.json mine.json --task-reports DIR   # runs read as one

writes, under ``out_dir``:

- ``report.md``: per task/utility/game, a table of estimator x budget with LDS per
  alpha (mean ± seed std over estimator seeds), relative L2 error against the exact
  values, Spearman, evaluations, cost and wall-clock seconds (pytest-benchmark's
  timer), the LDS of the exact values as the ceiling, and the plots;
- ``figures.csv`` (one row per case and seed) and ``summary.csv`` (seed-aggregated);
- PNG plots per task/utility/game: LDS (each alpha) and relative L2 against budget,
  LDS against wall-clock, and top-k removal curves.

Figures are read from each benchmark's ``extra_info`` (written by
:func:`surrogateshap.evaluation.evaluate`); wall-clock from its ``stats``. Cases that
raised are not benchmarks (pytest-benchmark writes only finished ones): the suite's
plug-in lists them under the JSON's ``"failed_cases"`` key (case fields and ``error``)
and the report shows them in a "Failed cases" table.

Several JSON files are read as one run (:func:`load_runs`): a new estimator's run beside
a published report's cases, each source named with its commit; a case in two files, or
a task and utility scored against two different ground truths, is refused.

The JSON is input, not markdown: every string taken from it is escaped (no HTML, link,
image or emphasis from a name), a command or commit goes in a code span. A malformed
case field (task, utility, game, estimator, budget, seed) or structure is one
``ValueError`` naming it; a missing or malformed optional field is shown as "?" (date,
commit, CPU) or "n/a" (a figure, the timing).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

__all__ = ["read_benchmark_doc", "load_benchmark_json", "load_failed_cases", "load_runs", "summarize",
           "markdown_table", "write_report", "write_task_reports", "task_report", "pooled_lds", "FAILED_KEY"]

KEYS = ["task", "utility", "game", "estimator", "budget"]
#: top-level key of the benchmark JSON listing cases that raised (benchmarks/conftest.py)
FAILED_KEY = "failed_cases"


def read_benchmark_doc(json_path, require_cases: bool = False) -> dict:
    """The parsed ``--benchmark-json`` file, with one clear ``ValueError`` (or
    ``FileNotFoundError``) when it is missing, empty, cut short or not a benchmark file.
    ``require_cases``: also refuse a file with no surrogateshap case, run or failed."""
    path = Path(json_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (write one with "
                                "`pytest benchmarks/ --benchmark-json FILE`)")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a benchmark JSON file")
    text = path.read_text()
    if not text.strip():
        raise ValueError(f"{path} is empty (a benchmark run still writing it, or killed)")
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); it may be cut short (a run killed "
                         "while writing it)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks", []), list):
        raise ValueError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    _check_fields(path, doc)
    if require_cases and not _case_infos(doc) and not doc.get(FAILED_KEY):
        raise ValueError(f"{path} holds no surrogateshap benchmark cases")
    return doc


#: the fields every case must have, as JSON types; every other field is optional: a missing or
#: malformed one is shown as "?" (descriptions: date, commit, CPU) or "n/a" (figures)
CASE_FIELDS = {"task": str, "utility": str, "game": str, "estimator": str, "budget": int, "seed": int}


def _check_fields(path, doc):
    """One ValueError naming the first malformed structure or case field of ``doc``."""
    failed = doc.get(FAILED_KEY) or []
    if not isinstance(failed, list) or not all(isinstance(r, dict) for r in failed):
        raise ValueError(f"{path}: {FAILED_KEY!r} is not a list of objects")
    for i, b in enumerate(doc.get("benchmarks", [])):
        if not isinstance(b, dict):
            raise ValueError(f"{path}: benchmarks[{i}] is not an object")
        for part in ("extra_info", "params"):
            if b.get(part) is not None and not isinstance(b[part], dict):
                raise ValueError(f"{path}: benchmarks[{i}].{part} is not an object")
        info = _info(b)
        if "task" not in info:
            continue  # not one of ours
        for field, kind in CASE_FIELDS.items():
            value = info.get(field)
            ok = isinstance(value, kind) and not isinstance(value, bool) and value != ""
            if kind is int and isinstance(value, float):
                ok = value.is_integer()
            if not ok:
                raise ValueError(f"{path}: benchmarks[{i}]: field {field!r} must be "
                                 f"{'a name' if kind is str else 'an integer'}; got {value!r}")


def _obj(doc: dict, *keys) -> dict:
    """A nested optional object of the JSON ({} where it is missing or not an object)."""
    for k in keys:
        doc = doc.get(k) if isinstance(doc, dict) else None
    return doc if isinstance(doc, dict) else {}


def _info(benchmark: dict) -> dict:
    """A benchmark's case fields and figures (its ``extra_info``, else its ``params``)."""
    info = dict(benchmark.get("extra_info") or {})
    if "task" not in info:
        info.update(benchmark.get("params") or {})
    return info


def _case_infos(doc) -> list[dict]:
    return [info for info in map(_info, doc.get("benchmarks", [])) if "task" in info]


def load_failed_cases(json_path) -> pd.DataFrame:
    """One row per case that raised: its fields (task ... seed) and ``error``."""
    return _failed_frame(read_benchmark_doc(json_path))


def _failed_frame(doc: dict) -> pd.DataFrame:
    rows = doc.get(FAILED_KEY) or []
    cols = [*KEYS, "seed", "error"]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)


def load_benchmark_json(json_path) -> pd.DataFrame:
    """One row per benchmark case: its parameters, every figure, and ``wall_seconds``.
    Empty (columns only) when every case failed; raises when there is no case at all."""
    return _cases_frame(read_benchmark_doc(json_path), json_path)


def _cases_frame(doc: dict, json_path) -> pd.DataFrame:
    """:func:`load_benchmark_json` of a parsed file (``json_path`` names it in an error)."""
    rows = []
    for b in doc.get("benchmarks", []):
        info = _info(b)
        if "task" not in info:
            continue  # not one of ours
        extra = info.pop("estimator_extra", None)
        info["estimator_extra"] = json.dumps(extra, sort_keys=True) if extra else ""
        fails = info.pop("regression_failures", None)
        info["regression_failures"] = "; ".join(fails) if fails else ""
        info["wall_seconds"] = _obj(b, "stats").get("mean", float("nan"))
        info["group"] = b.get("group")
        rows.append(info)
    df = pd.DataFrame(rows)
    if df.empty:
        if doc.get(FAILED_KEY):
            return pd.DataFrame(columns=[*KEYS, "seed", "scale", "wall_seconds"])
        raise ValueError(f"{json_path} holds no surrogateshap benchmark cases")
    for c in df.columns:
        if c not in ("task", "utility", "game", "estimator", "scale", "cost_unit", "truth",
                     "regression", "regression_failures", "group", "target", "stopped_by", "estimator_extra"):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    df["budget"] = df["budget"].astype(int)
    return df.sort_values(KEYS + ["seed"]).reset_index(drop=True)


def _paths(json_paths) -> list[Path]:
    """One path or several, as a list."""
    return [Path(json_paths)] if isinstance(json_paths, (str, Path)) else [Path(p) for p in json_paths]


def load_runs(json_paths) -> tuple[list[dict], pd.DataFrame, pd.DataFrame]:
    """(docs, cases, failed cases) of one benchmark JSON file or several read as one run,
    e.g. a new estimator's run beside the cases of a published report. Each case keeps
    its file's name in ``source``. Refused with one ValueError naming the files: a case
    (task, utility, game, estimator, budget, seed) in two of them, and a task and
    utility whose cases were scored against different ground truths (``truth`` hash:
    another table, other test sets), which no report may pool."""
    paths = _paths(json_paths)
    if not paths:
        raise ValueError("no benchmark JSON file given")
    docs = [read_benchmark_doc(p, require_cases=True) for p in paths]  # each file read once
    frames = [_cases_frame(d, p).assign(source=p.name) for p, d in zip(paths, docs)]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(paths) > 1 and not df.empty:
        dup = df[df.duplicated([*KEYS, "seed"], keep=False)]
        if len(dup):
            r = dup.iloc[0]
            raise ValueError(f"case {r.task}/{r.utility}/{r.game}/{r.estimator}/{r.budget} seed {r.seed} is in "
                             f"{' and '.join(sorted(set(dup[(dup[KEYS] == r[KEYS]).all(axis=1)].source)))}: "
                             "give each case once")
        if "truth" in df:
            for (task, util), g in df.groupby(["task", "utility"]):
                seen = g.dropna(subset=["truth"]).groupby("truth")["source"].first()
                if len(seen) > 1:
                    raise ValueError(f"{task}/{util} was scored against different ground truths: "
                                     + ", ".join(f"{t} in {src}" for t, src in seen.items())
                                     + " (another table or test sets); a report pools one")
        df = df.sort_values([*KEYS, "seed"]).reset_index(drop=True)
    failed = pd.concat([_failed_frame(d) for d in docs], ignore_index=True)
    return docs, df, failed


def _sources(paths, docs) -> str:
    """Each file of the run, with its commit and date, as markdown."""
    return "; ".join(f"{_code(p.name)} (commit {_commit(d)}, {_md(d.get('datetime', '?'))})"
                     for p, d in zip(paths, docs))


def _budget_cell(cases, budget) -> str:
    """A budget as a report states it: a number, or a precision target by its label with
    the evaluations its runs spent (its cap alone would overstate them)."""
    target = cases["target"].dropna() if "target" in cases else ()
    if len(target):
        spent = pd.to_numeric(cases.get("n_evaluations"), errors="coerce")
        shown = "-".join(f"{v:.0f}" for v in sorted({spent.min(), spent.max()})) if spent.notna().any() else "?"
        return f"{target.iloc[0]} (spent {shown})"
    return str(int(budget))


def _commit(doc) -> str:
    """The run's commit, as markdown: its first 12 characters, and whether it was dirty."""
    commit = _obj(doc, "commit_info")
    return _code(str(commit.get("id", "?"))[:12]) + (" (dirty)" if commit.get("dirty") is True else "")


def lds_alphas(df) -> list[str]:
    """The LDS alphas a benchmark frame holds (its ``lds_<alpha>_mean`` columns), ascending."""
    found = {m.group(1) for c in df.columns if (m := re.fullmatch(r"lds_([0-9.]+)_mean", c))}
    return sorted(found, key=float)


def _fractions(df) -> list[str]:
    found = {m.group(1) for c in df.columns if (m := re.fullmatch(r"removal_([0-9.]+)_top", c))}
    return sorted(found, key=float)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Seed-aggregated figures: mean and seed std (ddof=1) per task/utility/game/estimator/budget."""
    figs = [c for c in df.columns if c not in KEYS + ["seed", "scale", "cost_unit", "truth", "regression",
                                                       "regression_failures", "group", "n_players"]]
    g = df.groupby(KEYS, sort=True)
    mean = g[figs].mean(numeric_only=True).add_suffix("__mean")
    std = g[figs].std(ddof=1, numeric_only=True).add_suffix("__std")
    out = pd.concat([mean, std], axis=1)
    out["n_seeds"] = g.size()
    if "regression" in df:
        out["n_failed"] = g["regression"].apply(lambda s: int((s == "fail").sum()))
    out["cost_unit"] = g["cost_unit"].first() if "cost_unit" in df else ""
    return out.reset_index()


def _num(value, fmt: str) -> str:
    """A figure of the table, or "n/a" where it is missing or not a finite number."""
    return f"{value:{fmt}}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _pm(mean, std, digits=1) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


_MD_ESCAPES = {**{c: "\\" + c for c in "\\`*_[]!|"}, "&": "&amp;", "<": "&lt;", ">": "&gt;",
               "\n": " ", "\r": " "}


def _md(text) -> str:
    """Text from the benchmark JSON, shown as text in markdown: HTML (``<script>``), links,
    images, emphasis, code and table cells (``|``) escaped, on one line."""
    return "".join(_MD_ESCAPES.get(ch, ch) for ch in str(text))


def _code(text) -> str:
    """Text from the JSON in a code span (a command): nothing in it is markdown but a
    backtick, which would end the span."""
    return "`" + " ".join(str(text).replace("`", "'").split()) + "`"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table of a DataFrame (every cell escaped, index dropped)."""
    cols = [_md(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.astype(object).to_numpy().tolist():
        lines.append("| " + " | ".join(_md(v) for v in row) + " |")
    return "\n".join(lines)


def _group_table(s: pd.DataFrame, raw: pd.DataFrame, alphas) -> pd.DataFrame:
    rows = []
    for d in s.to_dict("records"):
        cases = raw[(raw["estimator"] == d["estimator"]) & (raw["budget"] == d["budget"])]
        row = {"estimator": d["estimator"], "budget": _budget_cell(cases, d["budget"])}
        for a in alphas:
            row[f"LDS@{a}"] = _pm(d.get(f"lds_{a}_mean__mean"), d.get(f"lds_{a}_mean__std"))
        if "relative_l2__mean" in d:
            row["rel. L2"] = _pm(d.get("relative_l2__mean"), d.get("relative_l2__std"), 3)
            row["Spearman"] = _pm(d.get("spearman__mean"), None, 2)
        if "shapley_relative_l2_rescaled__mean" in d:  # scores of another index, rescaled
            row["rel. L2 (rescaled)"] = _pm(d.get("shapley_relative_l2_rescaled__mean"),
                                            d.get("shapley_relative_l2_rescaled__std"), 3)
            row["Spearman vs Shapley"] = _pm(d.get("shapley_spearman__mean"), None, 2)
        row["evaluations"] = _num(d.get("n_evaluations__mean"), ".0f")
        row["cost"] = _num(d.get("cost__mean"), ".0f")
        row["seconds"] = _num(d.get("wall_seconds__mean"), ".3g")
        row["seeds"] = str(int(d["n_seeds"]))
        if "n_failed" in d:
            row["regressed"] = str(int(d["n_failed"])) if d["n_failed"] else ""
        rows.append(row)
    ceil = {a: raw.get(f"ceiling_lds_{a}_mean") for a in alphas}
    if any(c is not None and c.notna().any() for c in ceil.values()):
        row = {"estimator": "exact values (ceiling)", "budget": ""}
        for a in alphas:
            c = ceil[a]
            row[f"LDS@{a}"] = _pm(float(c.dropna().iloc[0]) if c is not None and c.notna().any() else None, None)
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def _style(estimators):
    """Distinct styles: SurrogateSHAP variants in warm colours, solid; baselines in
    tab10 colours, dashed; each with its own marker."""
    import matplotlib

    ests = sorted(estimators)
    ours = [e for e in ests if e.startswith("surrogateshap")]
    others = [e for e in ests if e not in ours]
    warm = matplotlib.colormaps["autumn"]
    tab = matplotlib.colormaps["tab10"]
    cool = [tab(i) for i in (0, 2, 4, 9, 5, 6, 7, 8, 3, 1)]
    markers = "osD^v<>pPX*h"
    style = {}
    for i, e in enumerate(ours):
        style[e] = dict(color=(0.85, 0.1, 0.1) if e == "surrogateshap" else warm(0.15 + 0.7 * i / max(1, len(ours))),
                        marker=markers[i % len(markers)], linestyle="-")
    for i, e in enumerate(others):
        style[e] = dict(color=cool[i % len(cool)], marker=markers[(i + 3) % len(markers)],
                        linestyle="--" if i >= len(cool) else "-." if i % 2 else "--")
    return style


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _save_with_legend(fig, ax, path: Path) -> str:
    """Grid, legend outside the axes, save as PNG, close; returns the file name."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _plot_group(name, s, raw, alphas, fractions, style, out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    has_l2 = "relative_l2__mean" in s and s["relative_l2__mean"].notna().any()
    panels = [(f"lds_{a}_mean", f"LDS @ alpha={a}") for a in alphas]
    if has_l2:
        panels.append(("relative_l2", "relative L2 error vs exact"))
    ncol = 2 if len(panels) > 2 else len(panels)
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol + 2.6, 3.6 * nrow + 0.6), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (fig_name, title) in zip(axes.flat, panels):
        for est, g in s.groupby("estimator"):
            g = g.sort_values("budget")
            ax.errorbar(g["budget"], g[f"{fig_name}__mean"], yerr=g[f"{fig_name}__std"].fillna(0),
                        label=est, capsize=2, markersize=4, linewidth=1.2, **style[est])
        if fig_name.startswith("lds_"):
            c = raw.get(f"ceiling_{fig_name}")
            if c is not None and c.notna().any():
                ax.axhline(float(c.dropna().iloc[0]), color="k", linestyle=":", linewidth=1,
                           label="exact values (ceiling)")
        else:
            ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget (distinct game evaluations)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(f"{name}: quality vs budget (mean ± std over estimator seeds)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / fig.get_figwidth(), 0.96))
    f = out / f"{_slug(name)}_vs_budget.png"
    fig.savefig(f, dpi=110)
    plt.close(fig)
    files.append(("LDS and error vs budget", f.name))

    # LDS vs wall-clock
    a = "0.5" if "0.5" in alphas else alphas[len(alphas) // 2]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for est, g in s.groupby("estimator"):
        g = g.sort_values("budget")
        ax.plot(g["wall_seconds__mean"].clip(lower=1e-5), g[f"lds_{a}_mean__mean"], label=est,
                markersize=4, linewidth=1.2, **style[est])
    c = raw.get(f"ceiling_lds_{a}_mean")
    if c is not None and c.notna().any():
        ax.axhline(float(c.dropna().iloc[0]), color="k", linestyle=":", linewidth=1, label="exact values (ceiling)")
    ax.set_xscale("log")
    ax.set_xlabel("wall-clock seconds of the estimator (pytest-benchmark; game replay included)")
    ax.set_ylabel(f"LDS @ alpha={a}")
    ax.set_title(f"{name}: LDS vs wall-clock (points: budgets)", fontsize=10)
    files.append(("LDS vs wall-clock", _save_with_legend(fig, ax, out / f"{_slug(name)}_lds_vs_time.png")))

    # top-k removal at each estimator's largest budget
    if fractions:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        x = [float(fr) for fr in fractions]
        rand = None
        for est, g in s.groupby("estimator"):
            r = g.sort_values("budget").iloc[-1]
            ys = [r[f"removal_{fr}_top__mean"] for fr in fractions]
            ax.plot(x, ys, label=f"{est} (b={int(r['budget'])})", markersize=4, linewidth=1.2, **style[est])
            rand = [r[f"removal_{fr}_random_mean__mean"] for fr in fractions]
        if rand is not None:
            ax.plot(x, rand, color="k", linestyle=":", marker="x", label="random players")
        ax.axhline(0, color="gray", linewidth=0.8)
        ax.set_xlabel("fraction of players removed (highest-valued first)")
        ax.set_ylabel("utility change v(N - top k) - v(N)")
        ax.set_title(f"{name}: top-k removal (lower = better ranking)", fontsize=10)
        files.append(("Top-k removal", _save_with_legend(fig, ax, out / f"{_slug(name)}_removal.png")))
    return files


def write_report(json_path, out_dir="results/report", plots: bool = True) -> Path:
    """Write report.md, figures.csv, summary.csv and PNG plots to ``out_dir``; returns
    the path of report.md. ``json_path``: one benchmark JSON file or several (:func:`load_runs`)."""
    docs, df, failed = load_runs(json_path)
    doc = docs[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = summarize(df) if not df.empty else pd.DataFrame(columns=[*KEYS])
    df.to_csv(out / "figures.csv", index=False, float_format="%.6g")
    s.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    alphas, fractions = lds_alphas(df), _fractions(df)
    estimators = sorted(df["estimator"].unique())
    style = _style(estimators)

    cpu = _obj(doc, "machine_info", "cpu")
    scales = sorted({str(v) for v in df["scale"].dropna()}) if "scale" in df else []
    if not scales and not failed.empty:
        scales = sorted({str(r.get("scale")) for d in docs for r in d.get(FAILED_KEY, []) if r.get("scale")})
    lines = [
        "# Benchmark report",
        "",
        (f"Source: {_code(_paths(json_path)[0].name)} ({_md(doc.get('datetime', '?'))}), commit {_commit(doc)}, "
         if len(docs) == 1 else f"Sources: {_sources(_paths(json_path), docs)}; the first's machine: ")
        + f"{_md(cpu.get('brand_raw', '?'))} x{_md(cpu.get('count', '?'))}; scale "
        f"{_md(', '.join(scales) or '?')}; "
        f"{len(df)} cases run, {df['estimator'].nunique()} estimators"
        + (f"; **{len(failed)} cases failed** (see Failed cases)." if len(failed) else "."),
        "",
        "LDS: 100 x Spearman(sum of values over a test coalition, its utility), mean over "
        "the ground truth's retraining (or noise) seeds; the table shows the mean ± std of "
        "that over estimator seeds. rel. L2: ||values - exact|| / ||exact||, against exact "
        "values of the estimator's own index; a datamodel, LOO or heuristic score gets "
        "rel. L2 (rescaled), min_a ||a values - exact Shapley|| / ||exact Shapley||, and its "
        "Spearman with them. Budget and "
        "evaluations count distinct game evaluations (for digits10's retraining game each "
        "is the seed mean of the recorded retrainings, so cost = evaluations x seeds, in "
        "model trainings). seconds: the estimator's wall-clock under pytest-benchmark.",
        "",
    ]
    if "regression" in df:
        nfail = int((df["regression"] == "fail").sum())
        lines += [f"Regression check: {int((df['regression'].isin(['pass', 'fail'])).sum())} cases "
                  f"checked, {nfail} failed.", ""]
        if nfail:
            lines += ["Regressed cases:", ""]
            for r in df[df["regression"] == "fail"].itertuples():
                case = _md(f"{r.task}/{r.utility}/{r.game}/{r.estimator}/{r.budget}")
                lines.append(f"- {case} seed {_md(r.seed)}: {_md(r.regression_failures)}")
            lines.append("")
    if len(failed):
        lines += ["## Failed cases", "",
                  "These cases raised before producing figures; they are in no table or plot below.",
                  "", markdown_table(failed.fillna("")), ""]
    for (task, util, game), sg in s.groupby(["task", "utility", "game"], sort=True):
        name = f"{task}/{util}/{game}"
        raw = df[(df.task == task) & (df.utility == util) & (df.game == game)]
        lines += [f"## {_md(name)}", ""]
        lines.append(markdown_table(_group_table(sg, raw, alphas)))
        lines.append("")
        if plots:
            for title, fname in _plot_group(name, sg, raw, alphas, fractions, style, out):
                lines += [f"![{_md(name)}: {title}]({fname})", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


# ---------------------------------------------------------------- task reports
#: how a task report's "±" is defined (its header says it, once)
INTERVAL = ("LDS in points (100 x Spearman of the values summed over a test coalition with its "
            "retrained utility); each cell is the mean over the k (estimator seed, retraining seed) "
            "pairs of the case, ± the 95% interval 1.96 sd / sqrt(k) over those pairs (k = 1: no "
            "interval). The pairs share retraining seeds, so the interval treats as independent what "
            "is not: it understates the uncertainty; an estimator run alone on one estimator seed has "
            "k = the table's retraining seeds")


def case_label(row) -> str:
    """An estimator as the task report names it: with the game it played."""
    game = {"proxy": "proxy", "retraining": "retraining", "model": "model", "finetune": "fine-tuning game"}
    return f"{row['estimator']} ({game.get(row['game'], row['game'])})"


def pooled_lds(rows: pd.DataFrame, alpha: str) -> tuple[float, float, int]:
    """(mean, 1.96 sd / sqrt(k), k) of the per-seed LDS values ``lds_{alpha}_s{i}`` of
    every row (estimator seed) of one case: the task report's one interval."""
    cols = [c for c in rows.columns if re.fullmatch(rf"lds_{re.escape(alpha)}_s\d+", c)]
    vals = pd.to_numeric(rows[cols].to_numpy().ravel(), errors="coerce") if cols else []
    vals = [v for v in vals if v == v]
    k = len(vals)
    if k == 0:
        return float("nan"), float("nan"), 0
    sd = pd.Series(vals).std(ddof=1) if k > 1 else float("nan")
    return float(pd.Series(vals).mean()), (1.96 * sd / math.sqrt(k) if k > 1 else float("nan")), k


def task_report(df: pd.DataFrame, task: str, source: str = "") -> str:
    """The markdown report of one task of a benchmark run (the published
    ``results/<task>_report.md``): per utility, the proxy's fidelity to retraining, LDS
    per alpha with its one interval and the additive reference, precision@k where the task
    plants players, and top-k removal against random."""
    t = df[df.task == task].copy()
    t["label"] = [case_label(r) for r in t.to_dict("records")]
    alphas = lds_alphas(t)
    fractions = _fractions(t)
    lines = [f"# {_md(task)}: estimators against its retrained ground truth", ""]
    if source:
        lines += [source, ""]
    lines += [INTERVAL + ". Retrainings: what the estimator paid in model trainings (the table "
              "served them); the proxy's and the model-based estimators' cost is in their own units.", ""]
    fid_cols = ["proxy_spearman", "seed_spearman", "fidelity_coalitions"]
    if all(c in t for c in fid_cols):
        fid = t.groupby("utility", sort=True)[fid_cols].first().reset_index()
        fid["fidelity_coalitions"] = fid["fidelity_coalitions"].map(lambda v: "" if v != v else str(int(v)))
        fid.columns = ["utility", "proxy vs retraining (seed mean)", "seed vs seed (noise ceiling)", "coalitions"]
        lines += ["## Proxy vs retraining (Spearman over the table's coalitions of 1..n-1 players)", "",
                  markdown_table(fid.round(3)), ""]
    order = {"proxy": 0, "retraining": 1, "model": 2, "finetune": 3}  # SurrogateSHAP first
    t = t.assign(_order=t["game"].map(order).fillna(len(order))).sort_values(["_order", "estimator", "budget"],
                                                                             kind="stable")
    for util, u in t.groupby("utility", sort=True):
        rows = []
        for (label, budget), c in u.groupby(["label", "budget"], sort=False):
            row = {"estimator": label, "budget": _budget_cell(c, budget), "seeds": str(len(c))}
            for a in alphas:
                m, h, _ = pooled_lds(c, a)
                row[f"LDS@{a}"] = _pm(m, h)
            unit = str(c["cost_unit"].iloc[0]) if "cost_unit" in c else ""
            cost = float(pd.to_numeric(c["cost"], errors="coerce").mean()) if "cost" in c else float("nan")
            # a game that trains, costed in steps (multifidelity, the fine-tuning game), did
            # train: its cost says how much, not a count of retrainings
            trains = c["game"].iloc[0] in ("retraining", "finetune")
            row["retrainings"] = f"{cost:.0f}" if unit == "model trainings" else "see cost" if trains else "0"
            row["cost"] = f"{cost:.4g} {unit}"
            row["seconds"] = _num(pd.to_numeric(c["seconds"], errors="coerce").mean(), ".3g") if "seconds" in c else ""
            rows.append(row)
        ceil = {a: u.get(f"ceiling_additive_lds_{a}_mean") for a in alphas}
        if any(c is not None and c.notna().any() for c in ceil.values()):
            row = {"estimator": "additive fit on the table's other coalitions (least squares on their retrained utilities: a reference, not a bound)"}
            for a in alphas:
                c = ceil[a]
                row[f"LDS@{a}"] = _pm(float(c.dropna().iloc[0]) if c is not None and c.notna().any() else None, None)
            rows.append(row)
        lines += [f"## {_md(util)}: LDS", "", markdown_table(pd.DataFrame(rows).fillna("")), ""]
        prec = [c for c in u.columns if c.startswith("precision_at_") and u[c].notna().any()]
        if prec:
            p = u.groupby("label", sort=False)[prec].mean().reset_index().rename(columns={"label": "estimator"})
            lines += [f"## {_md(util)}: precision@k at finding the planted players (mean over estimator seeds)",
                      "", markdown_table(p.round(3)), ""]
        lines += _split_section(util, u)
        rem = []
        for label, c in u.groupby("label", sort=False):
            for f in fractions:
                top = f"removal_{f}_top"
                if top not in c or not c[top].notna().any():
                    continue
                r = c[c[top].notna()].iloc[0]
                rem.append({"estimator": label, "fraction": f, "k": int(r.get(f"removal_{f}_k", 0)),
                            "top": f"{r[top]:.4g}", "bottom": f"{r[f'removal_{f}_bottom']:.4g}",
                            "random": _pm(r.get(f"removal_{f}_random_mean"), r.get(f"removal_{f}_random_std"), 3)})
        if rem:
            lines += [f"## {_md(util)}: removal, v(N without the k removed) - v(N), seed mean of the "
                      "seeds holding every set of the k (a good ranking: top < random < bottom; random: "
                      "mean ± sd over the random sets, not the LDS interval)", "",
                      markdown_table(pd.DataFrame(rem)), ""]
    return "\n".join(lines) + "\n"


def split_cells(extra: dict) -> dict | None:
    """What an estimator that buys several fidelities (its extra's ``split``:
    multifidelity) bought of each, as a report's cells; None for any other extra."""
    split = extra.get("split")
    if not isinstance(split, dict):
        return None
    bought = "; ".join(
        f"{name}: {part.get('evaluations', 0):.0f} evaluations, "
        + (f"exact by {part['exact']}, free" if part.get("exact") else f"{part.get('steps', 0):.0f} steps")
        for name, part in split.items() if isinstance(part, dict))
    weights, corr = extra.get("level_weights"), extra.get("correlation")
    return {"bought": bought, "levels kept": ", ".join(map(str, extra.get("levels", []))),
            "pilot units": str(extra.get("pilot_units", "")),
            "correlation with the target (pilot)": ", ".join(
                f"{k} {v:.2f}" for k, v in corr.items() if v is not None) if isinstance(corr, dict) else "",
            "level weights": ", ".join(f"{w:.2f}" for w in weights) if isinstance(weights, list) else ""}


def _split_section(util, u: pd.DataFrame) -> list[str]:
    """:func:`split_cells` of every case of ``u`` with a split, per estimator seed, from the
    benchmark JSON."""
    rows = []
    for r in u.to_dict("records"):
        cells = split_cells(json.loads(r["estimator_extra"])) if r.get("estimator_extra") else None
        if cells is not None:
            rows.append({"estimator": r["label"], "seed": str(int(r["seed"])), **cells})
    if not rows:
        return []
    return [f"## {_md(util)}: what each multi-fidelity estimator bought (per estimator seed; steps in "
            "training steps)", "", markdown_table(pd.DataFrame(rows)), ""]


def write_task_reports(json_path, out_dir="results", tasks=None) -> list[Path]:
    """Write ``<out_dir>/<task>_report.md`` for every task of the run whose ground truth is
    sampled (no exact values), or for ``tasks``; returns the paths. ``json_path``: one
    benchmark JSON file or several read as one run (:func:`load_runs`)."""
    docs, df, _ = load_runs(json_path)
    paths_in = _paths(json_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = tasks or sorted(t for t, g in df.groupby("task")
                            if "relative_l2" not in g or not g["relative_l2"].notna().any())
    paths = []
    for task in names:
        if not (df.task == task).any():
            raise ValueError(f"{', '.join(p.name for p in paths_in)} holds no case of task {task!r}")
        scale = df[df.task == task]["scale"].iloc[0] if "scale" in df else "?"
        name = paths_in[0].name
        run = _code(f"pytest benchmarks/ --task {task} --scale {scale} --benchmark-json {name}")
        report = _code(f"surrogateshap report {' '.join(p.name for p in paths_in)} --task-reports {out_dir}")
        if len(paths_in) == 1:
            doc = docs[0]
            source = f"Produced by {run} then {report} (commit {_commit(doc)}, {_md(doc.get('datetime', '?'))})."
        else:
            mine = df[df.task == task].groupby("source")["estimator"].unique()
            source = (f"Produced by {report}, several benchmark runs read as one (each case from one, scored "
                      f"against the same ground truth): " + "; ".join(
                          f"{_sources([p], [d])}: {_md(', '.join(sorted(mine.get(p.name, []))) or 'no case')}"
                          for p, d in zip(paths_in, docs)) + f". The first is {run}.")
        path = out / f"{_slug(task).replace('-', '_')}_report.md"  # a name from the JSON, not a path
        path.write_text(task_report(df, task, source))
        paths.append(path)
    return paths

