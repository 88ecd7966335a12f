"""The one report path: a task report is written from a benchmark JSON alone, every
figure computed by ``evaluate`` (per-seed LDS pooled into one named interval, the
proxy's fidelity beside the seed-vs-seed ceiling, the additive ceiling, precision@k,
removal against random)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from surrogateshap import Attribution
from surrogateshap.evaluation import evaluate, ground_truth_from_table, proxy_fidelity
from surrogateshap.game import coalition_key
from surrogateshap.games import random_unanimity_game
from surrogateshap.metrics import sample_test_coalitions
from surrogateshap.report import INTERVAL, pooled_lds, write_report, write_task_reports
from surrogateshap.table import CoalitionTable


def _table(n=12, seeds=(0, 1), noise=0.05):
    game = random_unanimity_game(n, seed=5)
    rng = np.random.default_rng(0)
    sets = [sample_test_coalitions(n, a, m=30, seed=s) for a, s in ((0.25, 1), (0.5, 2), (0.75, 3))]
    extra = rng.random((200, n)) < 0.5
    masks = np.concatenate([np.zeros((1, n), bool), np.ones((1, n), bool), *sets, extra])
    rows = [{"coalition": coalition_key(m), "seed": s, "u": float(v + noise * rng.normal())}
            for s in seeds for m, v in zip(masks, game(masks))]
    frame = pd.DataFrame(rows).drop_duplicates(["coalition", "seed"])
    tests = {0.25: sets[0], 0.5: sets[1], 0.75: sets[2]}
    return game, CoalitionTable(frame, game.players, ["u"]), tests


def test_evaluate_gives_per_seed_lds_precision_and_ceilings():
    game, table, tests = _table()
    truth = ground_truth_from_table(table, "u", test_sets=tests, planted=[0, 3],
                                    fidelity_fn=lambda: proxy_fidelity(table, "u", game))
    # the additive fit uses none of the drawn test coalitions, and reaches a high LDS here
    fit_keys = {coalition_key(m) for m in truth.fit_set[0]}
    assert not fit_keys & {coalition_key(m) for t in tests.values() for m in t}
    assert len(truth.fit_set[0]) > 100
    ceiling = truth.ceiling()
    assert all(ceiling[f"additive_lds_{a:g}_mean"] > 50 for a in (0.25, 0.5, 0.75))
    # the proxy here is the noiseless game: near-perfect fidelity, above the seed-vs-seed ceiling
    fid = truth.fidelity()
    assert fid["proxy_spearman"] > fid["seed_spearman"] > 0.5 and fid["fidelity_coalitions"] > 100
    values = game.exact_values()
    figs = evaluate(Attribution(values, game.players, estimator="t"), truth)
    for a in ("0.25", "0.5", "0.75"):
        per = [figs[f"lds_{a}_s0"], figs[f"lds_{a}_s1"]]
        assert figs[f"lds_{a}_mean"] == pytest.approx(np.mean(per))
    top2 = np.argsort(-values)[:2]
    assert figs["precision_at_2"] == pytest.approx(len({0, 3} & set(top2.tolist())) / 2)


def test_pooled_interval_is_over_estimator_and_retraining_seed_pairs():
    rows = pd.DataFrame([{"lds_0.5_s0": 10.0, "lds_0.5_s1": 20.0}, {"lds_0.5_s0": 30.0, "lds_0.5_s1": 40.0}])
    mean, half, k = pooled_lds(rows, "0.5")
    assert k == 4 and mean == 25.0
    assert half == pytest.approx(1.96 * np.std([10, 20, 30, 40], ddof=1) / 2)
    assert math.isnan(pooled_lds(rows.iloc[:1, :1], "0.5")[1])  # one value: no interval


def _doc(tmp_path, rows):
    doc = {"datetime": "now", "commit_info": {"id": "abc"}, "benchmarks": [
        {"group": "g", "extra_info": r, "stats": {"mean": 1.0}} for r in rows]}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    return path


def test_task_report_names_its_interval_and_shows_every_section(tmp_path):
    base = {"task": "toy", "utility": "u", "scale": "default", "cost_unit": "model trainings",
            "proxy_spearman": 0.8, "seed_spearman": 0.7, "fidelity_coalitions": 50,
            "ceiling_additive_lds_0.5_mean": 61.0}
    rows = [
        {**base, "game": "proxy", "estimator": "surrogateshap", "budget": 512, "seed": s, "cost": 0.0,
         "cost_unit": "images generated", "lds_0.5_mean": 40 + s, "lds_0.5_s0": 40 + s, "lds_0.5_s1": 40 + s,
         "precision_at_3": 1.0, "seconds": 0.1}
        for s in (0, 1, 2)
    ] + [
        {**base, "game": "retraining", "estimator": "loo", "budget": 13, "seed": 0, "cost": 13.0,
         "lds_0.5_mean": 30.0, "lds_0.5_s0": 28.0, "lds_0.5_s1": 32.0, "precision_at_3": 0.0, "seconds": 0.01,
         "removal_0.25_top": -0.2, "removal_0.25_bottom": 0.1, "removal_0.25_random_mean": 0.0,
         "removal_0.25_random_std": 0.05, "removal_0.25_k": 3},
    ]
    path = _doc(tmp_path, rows)
    (out,) = write_task_reports(path, tmp_path / "reports")
    text = out.read_text()
    assert out.name == "toy_report.md" and INTERVAL in text
    assert "surrogateshap (proxy)" in text and "loo (retraining)" in text
    assert "41.0 ± " in text  # three seeds x two retraining seeds, pooled
    assert "61.0" in text and "not a bound" in text
    assert "precision@k" in text and "removal" in text and "-0.2" in text
    assert "0.8" in text and "noise ceiling" in text
    with pytest.raises(ValueError, match="no case of task 'other'"):
        write_task_reports(path, tmp_path / "reports", tasks=["other"])


def test_a_table_without_other_coalitions_has_no_additive_ceiling():
    game, table, tests = _table()
    only_tests = table.frame[table.frame["coalition"].isin(
        {coalition_key(m) for t in tests.values() for m in t})]
    t2 = CoalitionTable(only_tests, game.players, ["u"])
    truth = ground_truth_from_table(t2, "u", test_sets=tests)
    assert truth.fit_set is None and not any(k.startswith("additive") for k in truth.ceiling())


def _target_rows():
    base = {"task": "toy", "utility": "u", "scale": "default", "game": "proxy", "estimator": "surrogateshap",
            "budget": 8192, "target": "until-top5x1-first256-max8192", "stopped_by": "top_k",
            "cost": 0.0, "cost_unit": "images generated", "lds_0.5_mean": 40.0, "lds_0.5_s0": 40.0,
            "seconds": 0.1}
    return [{**base, "seed": s, "n_evaluations": n} for s, n in ((0, 1024), (1, 4096), (2, 2048))]


def test_a_precision_target_is_shown_by_its_label_and_what_it_spent(tmp_path):
    # its cap (the JSON's budget) alone would overstate what the runs paid
    (out,) = write_task_reports(_doc(tmp_path, _target_rows()), tmp_path / "reports")
    text = out.read_text()
    assert "| until-top5x1-first256-max8192 (spent 1024-4096) |" in text
    assert "| 8192 |" not in text


def test_the_general_report_shows_a_precision_target_as_the_task_report_does(tmp_path):
    fixed = {**_target_rows()[0], "estimator": "kernelshap", "budget": 512, "target": None, "n_evaluations": 512}
    text = write_report(_doc(tmp_path, [*_target_rows(), fixed]), tmp_path / "report", plots=False).read_text()
    assert "| surrogateshap | until-top5x1-first256-max8192 (spent 1024-4096) |" in text
    assert "| kernelshap | 512 |" in text and "| 8192 |" not in text


def test_several_runs_read_as_one_report(tmp_path):
    """A new estimator's run beside a published report's cases: one task report with both,
    each source named; a case in two files, or two ground truths for one utility, refused."""
    from surrogateshap.cli import main

    base = {"task": "toy", "utility": "u", "scale": "report", "cost_unit": "model trainings", "truth": "t1",
            "lds_0.5_mean": 30.0, "lds_0.5_s0": 28.0, "lds_0.5_s1": 32.0, "seconds": 0.1, "cost": 13.0}
    published = tmp_path / "a"
    published.mkdir()
    mine = tmp_path / "b"
    mine.mkdir()
    a = _doc(published, [{**base, "game": "retraining", "estimator": "loo", "budget": 13, "seed": 0}])
    b = _doc(mine, [{**base, "game": "retraining", "estimator": "multifidelity", "budget": 24, "seed": 0,
                     "lds_0.5_s0": 50.0, "lds_0.5_s1": 54.0, "cost_unit": "training steps", "cost": 2.4e4}])
    b = b.rename(b.with_name("mine.json"))
    (out,) = write_task_reports([a, b], tmp_path / "reports")
    text = out.read_text()
    assert "loo (retraining)" in text and "multifidelity (retraining)" in text and "52.0 ± " in text
    assert "run.json" in text and "mine.json" in text and "several benchmark runs" in text
    mf_row = next(line for line in text.splitlines() if line.startswith("| multifidelity"))
    assert "| see cost |" in mf_row  # it trained, costed in steps: not "0" retrainings
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "general")]) == 0
    general = (tmp_path / "general" / "report.md").read_text()
    assert "run.json" in general and "mine.json" in general and "multifidelity" in general
    with pytest.raises(ValueError, match="is in mine.json and run.json"):
        write_task_reports([a, b, _copy(b, tmp_path / "run.json")], tmp_path / "reports")
    other = _doc(tmp_path, [{**base, "truth": "t2", "game": "proxy", "estimator": "surrogateshap",
                             "budget": 512, "seed": 0}])
    with pytest.raises(ValueError, match="different ground truths"):
        write_task_reports([a, other], tmp_path / "reports")


def _copy(src, dst):
    dst.write_text(src.read_text())
    return dst


def test_small_extras_keep_what_a_report_can_show():
    from surrogateshap.benchmark import small_extras

    extra = {"solver": "regression", "pilot_units": np.int64(3), "weight": np.float64(0.5),
             "split": {"target": {"evaluations": 40, "steps": 58500.0}}, "levels": ["target", "proxy"],
             "bad": float("nan"), "values": np.zeros(20), "long": list(range(1000)), "obj": object(),
             "tuple": (1, 2)}
    kept = small_extras(extra)
    assert kept == {"solver": "regression", "pilot_units": 3, "weight": 0.5, "bad": None,
                    "split": {"target": {"evaluations": 40, "steps": 58500.0}}, "levels": ["target", "proxy"],
                    "tuple": [1, 2]}
    json.dumps(kept)  # all of it is JSON


def test_the_split_a_multifidelity_estimator_bought_is_in_the_task_report(tmp_path):
    """multifidelity's split (evaluations and steps per fidelity) goes through the
    benchmark JSON to the task report: no replay from a cache."""
    from surrogateshap.benchmark import small_extras
    from surrogateshap.games import UnanimityGame
    from surrogateshap.registry import get_estimator

    target = random_unanimity_game(6, n_terms=10, seed=0)
    near = UnanimityGame(6, target.terms, [1.1 * c for c in target.coefficients])
    att = get_estimator("multifidelity").estimate(target, 20, seed=0,
                                                  fidelities={"target": 1000, "finetune": (near, 100)})
    extra = small_extras(att.extra)
    split = extra["split"]
    assert set(split) == {"target", "finetune"} and split["target"]["evaluations"] > 0
    row = {"task": "toy", "utility": "u", "scale": "report", "game": "retraining", "estimator": "multifidelity",
           "budget": 20, "seed": 0, "cost": att.cost, "cost_unit": "training steps", "lds_0.5_mean": 30.0,
           "lds_0.5_s0": 30.0, "estimator_extra": extra}
    (out,) = write_task_reports(_doc(tmp_path, [row]), tmp_path / "reports")
    text = out.read_text()
    assert "what each multi-fidelity estimator bought" in text
    t, f = split["target"], split["finetune"]
    assert f"target: {t['evaluations']:.0f} evaluations, {t['steps']:.0f} steps" in text
    assert f"finetune: {f['evaluations']:.0f} evaluations, {f['steps']:.0f} steps" in text
    assert ", ".join(extra["levels"]) in text
