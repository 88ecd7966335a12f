"""``--set KEY=VALUE``: a task's configuration from the command line (what a folder's
owner sets without code, e.g. the LoRA family's local pipeline)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")

from test_imagefolder import _cli, _no_training, digits_folder, tiny  # noqa: E402,F401

from surrogateshap.cli import UsageError, _settings  # noqa: E402


def test_values_are_python_literals_or_text():
    assert _settings(["hidden=48", "skip=False", "channels=(8, 16)", "family=sd", "model_path=/m/sd",
                      "caption_template=an image by {contributor}"]) == {
        "hidden": 48, "skip": False, "channels": (8, 16), "family": "sd", "model_path": "/m/sd",
        "caption_template": "an image by {contributor}"}


@pytest.mark.parametrize("items, said", [
    (["hidden"], "--set wants KEY=VALUE"),
    (["=3"], "--set wants KEY=VALUE"),
    (["hidden=32", "hidden=64"], "--set hidden is given twice"),
])
def test_malformed_items_are_named(items, said):
    with pytest.raises(UsageError, match=said):
        _settings(items)


def test_set_reaches_the_tasks_configuration_and_bad_settings_are_one_error(tiny, capsys, monkeypatch):
    _no_training(monkeypatch)
    data = str(digits_folder(tiny / "d", bad=False))
    # a field the configuration checks against the folder: refused before any training
    rc, out, err = _cli(capsys, "run", "--task", "imagefolder", "--data", data, "--scale", "ci",
                        "--set", "n_modes=100")
    assert rc == 2 and "n_modes=100" in err and len(err.strip().splitlines()) == 1, err
    # the LoRA family without its local pipeline: named, nothing downloaded
    rc, out, err = _cli(capsys, "run", "--task", "imagefolder", "--data", data, "--scale", "ci",
                        "--set", "family=sd")
    assert rc == 2 and "model_path" in err and "Traceback" not in err, err
    # a field the configuration does not have
    rc, out, err = _cli(capsys, "run", "--task", "imagefolder", "--data", data, "--scale", "ci",
                        "--set", "no_such_field=1")
    assert rc == 2 and "no_such_field" in err and "Traceback" not in err, err


def test_set_changes_the_task_built(tiny):
    from argparse import Namespace

    from surrogateshap.cli import _task

    data = str(digits_folder(tiny / "d", bad=False))
    plain = _task(Namespace(task="imagefolder", scale="ci", data=data, set=None))
    wider = _task(Namespace(task="imagefolder", scale="ci", data=data, set=["hidden=48"]))
    assert wider.config.hidden == 48 and plain.config.hidden != 48
    assert wider.config_id() != plain.config_id()
