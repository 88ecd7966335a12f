"""report.md and the task reports treat the benchmark JSON as input, not markdown: its
strings are escaped, a malformed case field is one error naming it, a malformed optional
field is shown as "?" or "n/a"."""

from __future__ import annotations

import json
import re

import pytest

from surrogateshap.report import write_report, write_task_reports

CASE = {"task": "t[x](http://evil)", "utility": "u_1|v", "game": "known", "estimator": "<img src=x>**e**`c`!",
        "budget": 8, "scale": "ci", "lds_0.5_mean": 50.0, "relative_l2": 0.1, "cost": 8, "n_evaluations": 8}


def _doc(tmp_path, cases=None, **top):
    doc = {"datetime": "<script>x</script>\n# injected", "commit_info": {"id": "abc`def", "dirty": False},
           "machine_info": {"cpu": {"brand_raw": "![p](http://e/p.png)", "count": "<b>4</b>"}},
           "benchmarks": [{"group": "g", "stats": {"mean": 0.1}, "extra_info": c}
                          for c in (cases or [{**CASE, "seed": s} for s in (0, 1)])], **top}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    return path


def _outside_code(text: str) -> str:
    return re.sub(r"`[^`\n]*`", "", text)


def test_strings_from_the_json_are_shown_not_interpreted(tmp_path):
    text = write_report(_doc(tmp_path), tmp_path / "r", plots=False).read_text()
    (task_md,) = write_task_reports(_doc(tmp_path), tmp_path / "t", tasks=[CASE["task"]])
    for md in (text, task_md.read_text()):
        prose = _outside_code(md)
        for raw in ("<script>", "<img", "<b>", "**e**", "\n# injected", "u_1|v"):
            assert raw not in prose, raw
        assert not re.search(r"(?<!\\)\]\(", prose)  # no link or image
    assert "\\!\\[p\\](http://e/p.png) x&lt;b&gt;4&lt;/b&gt;" in text
    assert "## t\\[x\\](http://evil)/u\\_1\\|v/known" in text
    assert "&lt;img src=x&gt;\\*\\*e\\*\\*\\`c\\`\\!" in text
    assert "commit `abc'def`" in text  # a code span: its one special character replaced
    assert task_md.parent == tmp_path / "t"  # a task name is no path


@pytest.mark.parametrize("change, named", [
    ({"budget": "many"}, "field 'budget' must be an integer; got 'many'"),
    ({"seed": None}, "field 'seed' must be an integer; got None"),
    ({"estimator": 3}, "field 'estimator' must be a name; got 3"),
    ({"utility": ""}, "field 'utility' must be a name; got ''"),
])
def test_a_malformed_case_field_is_one_error_naming_it(tmp_path, capsys, change, named):
    path = _doc(tmp_path, [{**CASE, "seed": 0}, {**CASE, "seed": 1, **change}])
    with pytest.raises(ValueError, match=re.escape(f"benchmarks[1]: {named}")):
        write_report(path, tmp_path / "r", plots=False)
    from surrogateshap.cli import main

    assert main(["report", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and named in err


@pytest.mark.parametrize("top, named", [
    ({"benchmarks": [[1]]}, "benchmarks[0] is not an object"),
    ({"benchmarks": [{"extra_info": [1]}]}, "benchmarks[0].extra_info is not an object"),
    ({"failed_cases": "boom"}, "'failed_cases' is not a list of objects"),
])
def test_a_malformed_structure_is_one_error_naming_it(tmp_path, top, named):
    path = _doc(tmp_path, **top)
    with pytest.raises(ValueError, match=re.escape(named)):
        write_report(path, tmp_path / "r", plots=False)


def test_malformed_optional_fields_are_shown_as_unknown(tmp_path):
    cases = [{**CASE, "seed": s} for s in (0, 1)]
    path = _doc(tmp_path, cases, commit_info="abc", machine_info=[1])
    doc = json.loads(path.read_text())
    for b in doc["benchmarks"]:
        b["stats"] = "fast"
    path.write_text(json.dumps(doc))
    text = write_report(path, tmp_path / "r", plots=False).read_text()
    assert "commit `?`, ? x?;" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| &lt;img"))
    cells = [c.strip() for c in row.strip("| ").split(" | ")]
    assert cells[-2:] == ["n/a", "2"]  # seconds unknown; seeds
