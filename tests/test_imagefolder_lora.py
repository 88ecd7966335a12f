"""The ``imagefolder`` task with the LoRA family: a folder of captioned images, a local
diffusers pipeline and local scorer files (CLIP, the aesthetic head), all tiny and
random and saved here as a user would have them (mechanics, not quality)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")
for _mod in ("diffusers", "transformers", "peft", "PIL"):
    pytest.importorskip(_mod)

from test_imagefolder import digits_folder  # noqa: E402

from surrogateshap.tasks import get_task  # noqa: E402


@pytest.fixture(scope="module")
def local_files(tmp_path_factory):
    """A tiny random Stable Diffusion pipeline saved as a diffusers folder, a tiny CLIP
    vision folder and a linear aesthetic head file: the config's local paths."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from surrogateshap.tasks.models.pipelines import T2IPipeline

    root = tmp_path_factory.mktemp("models")
    T2IPipeline.tiny("sd", seed=3).pipe.save_pretrained(root / "sd")
    torch.manual_seed(0)
    clip = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                            image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(clip).eval().save_pretrained(root / "clip")
    torch.save(torch.nn.Linear(16, 1).state_dict(), root / "aesthetic.pth")
    return dict(model_path=str(root / "sd"), clip_path=str(root / "clip"), aesthetic_head=str(root / "aesthetic.pth"))


def captioned_folder(root):
    """Three contributors' digits with a ``metadata.csv`` of captions: one image without
    a caption, one truncated file."""
    data = digits_folder(root, per_digit=5)
    with open(data / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "contributor", "caption"])
        for who in ("zero", "one", "two"):
            w.writerows([(f"{who}/{k:03d}.png", who, "" if (who, k) == ("two", 4) else f"a handwritten {who}")
                         for k in range(5)])
        w.writerow(["zero/truncated.png", "zero", "a handwritten zero"])
    return data


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models are overhead-bound
    yield
    torch.set_num_threads(n)


def test_a_captioned_folder_is_valued_with_the_lora_family(tmp_path, local_files, one_thread, capsys):
    from surrogateshap.registry import get_estimator

    data = captioned_folder(tmp_path / "d")
    task = get_task("imagefolder", scale="ci", family="sd", data_dir=str(data), cache_dir=tmp_path / "cache",
                    n_samples=6, bank_per_unit=3, sample_batch=6, device="cpu", **local_files)
    assert task.players == ("one", "two", "zero") and task.utilities == ("aesthetic", "diversity")
    # the captions are the prompts; the image without one gets the default caption
    assert task.units == ("a handwritten one", "a handwritten two", "an image by two", "a handwritten zero")
    assert "zero/truncated.png: truncated image" in capsys.readouterr().err
    assert task.counts().tolist() == [5, 5, 5]
    assert task.train(np.array([0, 1, 0], bool), 0)[0].info["n_items"] == 5

    proxy = task.proxy_game("aesthetic")
    values = get_estimator("surrogateshap").estimate(proxy, 8, seed=0).values
    v_full, v_empty = proxy(np.array([[1, 1, 1], [0, 0, 0]], bool))
    assert np.isfinite(values).all() and v_full != v_empty
    assert values.sum() == pytest.approx(v_full - v_empty, rel=1e-9, abs=1e-9)  # efficient
    assert len(task.scorer.sample_bank().done()) == 4 * 3
    assert np.isfinite(task.proxy_game("diversity")(np.array([[1, 0, 1]], bool))).all()
    # the retraining game: one LoRA on the coalition's images and captions
    rec = task.retraining_game("aesthetic").records(np.array([[1, 0, 1]], bool))[0]
    assert rec["trainings"] == 1 and np.isfinite([rec["aesthetic"], rec["diversity"]]).all()


@pytest.mark.parametrize("override, named", [
    (dict(model_path=None), r"model_path: the sd pipeline's local diffusers folder \(model_index.json, unet.*"
                            r"not set"),
    (dict(model_path="/nowhere/sd"), r"/nowhere/sd/model_index.json not found \(nothing is downloaded\)"),
    (dict(clip_path=None), "clip_path: CLIP ViT-L/14 .* not set"),
    (dict(t2i_utilities=("neg_fid",)), r"t2i_utilities \('neg_fid',\): choose from aesthetic"),
    (dict(caption_template="by {owner}"), "caption_template 'by {owner}': KeyError"),
    (dict(family="lora"), "family 'lora': imagefolder trains mlp or unet, or the LoRA family with family= 'sd'"),
    (dict(hidden=64), "hidden: settings of the image families, not of family='sd'"),
])
def test_a_lora_config_that_does_not_fit_is_refused_when_made(tmp_path, local_files, override, named):
    data = captioned_folder(tmp_path / "d")
    kw = {**local_files, "family": "sd", **override}
    with pytest.raises(ValueError, match=named):
        get_task("imagefolder", scale="ci", data_dir=str(data), cache_dir=tmp_path / "cache", **kw)


def test_captions_asked_for_and_absent_are_refused(tmp_path, local_files):
    data = digits_folder(tmp_path / "d", per_digit=5, bad=False)  # sub-folders: no captions
    kw = dict(scale="ci", family="sd", data_dir=str(data), cache_dir=tmp_path / "cache", **local_files)
    with pytest.raises(ValueError, match="captions='csv' but sub-folders has no caption column"):
        get_task("imagefolder", captions="csv", **kw)
    task = get_task("imagefolder", **kw)  # captions="auto": the default caption for every image
    assert task.units == ("an image by one", "an image by two", "an image by zero")
    captioned_folder(data)
    with pytest.raises(ValueError, match=r"1 image\(s\) have an empty caption in .*metadata.csv: two/004.png"):
        get_task("imagefolder", captions="csv", **kw)
    assert get_task("imagefolder", captions="template", **kw).units == task.units
