"""The clinical audit at paper scale (``dermoscopy-sites``): the sex-melanoma utility, the
attribute classifiers' calls, the files the task names when absent, and the Stable
Diffusion + LoRA pipeline end to end on tiny random components (mechanics only)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from surrogateshap.tasks import get_task  # noqa: E402
from surrogateshap.tasks.data.images import DataMissingError  # noqa: E402
from surrogateshap.tasks.features.t2i import FeatureSet, T2IFeaturizer, attribute_positive, phi_from_means, t2i_utility  # noqa: E402

#: (image, site, colour): red images are "sex = 1", green ones "melanoma = 1"
ROWS = [("a.png", "H1", (230, 20, 20)), ("b.png", "H1", (230, 230, 20)), ("c.png", "H2", (20, 20, 230)),
        ("d.png", "H2", (20, 230, 20)), ("e.png", "H3", (230, 20, 20))]


class _MeanChannel(torch.nn.Module):
    """Logits from one colour channel's mean: (N,) with one logit, or (N, 2)."""

    def __init__(self, channel: int, two: bool):
        super().__init__()
        self.channel, self.two = channel, two

    def forward(self, x):
        z = 20.0 * (x[:, self.channel].mean((1, 2)) - 0.5)
        return torch.stack([-z, z], 1) if self.two else z


def _fixture(root):
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    lines = ["image,site,age"]
    for name, site, colour in ROWS:
        Image.new("RGB", (24, 24), colour).save(root / name)
        lines.append(f"{name},{site},50")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    torch.jit.save(torch.jit.script(_MeanChannel(0, two=False)), str(root / "sex_classifier.pt"))
    torch.jit.save(torch.jit.script(_MeanChannel(1, two=True)), str(root / "melanoma_classifier.pt"))
    return root


def test_sex_melanoma_correlation_is_the_weighted_phi():
    s, m = np.array([1.0, 1, 0, 0]), np.array([1.0, 0, 0, 0])
    fs = FeatureSet({"sex": s, "melanoma": m})
    # p(s) = 1/2, p(m) = 1/4, p(s m) = 1/4: phi = (1/4 - 1/8) / sqrt(1/2 * 1/2 * 1/4 * 3/4)
    assert t2i_utility("sex_melanoma_correlation", fs) == pytest.approx(0.125 / np.sqrt(3 / 64))
    w = np.array([1.0, 0, 0, 1])  # weights decide: perfectly associated
    assert t2i_utility("sex_melanoma_correlation", FeatureSet({"sex": s, "melanoma": m}, w)) == pytest.approx(1.0)
    assert t2i_utility("sex_melanoma_correlation", FeatureSet({"sex": s, "melanoma": 1 - s})) == pytest.approx(-1.0)
    assert t2i_utility("sex_melanoma_correlation", FeatureSet({"sex": np.ones(4), "melanoma": m})) == 0.0
    assert phi_from_means([0.5, 1.0], 0.5, [0.5, 0.5]).tolist() == [1.0, 0.0]  # broadcasts; constant -> 0


def test_attribute_calls_from_one_or_two_logits():
    assert attribute_positive([-1.0, 0.5, 0.0]).tolist() == [0, 1, 0]
    assert attribute_positive([[2.0], [-3.0]]).tolist() == [1, 0]
    assert attribute_positive([[0.1, 0.9], [0.9, 0.1]]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="sex classifier must return"):
        attribute_positive(np.zeros((2, 3)), "sex")


def test_featurizer_calls_each_attribute_on_resized_images():
    seen = []

    def net(x):
        seen.append(tuple(x.shape))
        return x[:, 0].mean((1, 2)) - 0.5

    x = np.zeros((3, 3, 8, 8), np.float32)
    x[1, 0] = 1.0
    f = T2IFeaturizer(attributes={"sex": net}, attribute_size=16)
    out = f(x, ["u"] * 3)
    assert out["sex"].tolist() == [0, 1, 0] and seen == [(3, 3, 16, 16)] and f.outputs == ("sex",)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 1))  # a module with parameters
    with torch.no_grad():
        lin[1].weight.zero_(), lin[1].bias.fill_(1.0)
    assert T2IFeaturizer(attributes={"melanoma": lin})(x, ["u"] * 3)["melanoma"].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="returned 2 calls for 3 images"):
        T2IFeaturizer(attributes={"sex": lambda x: np.zeros(2)})(x, ["u"] * 3)


def test_paper_preset_names_every_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv("SURROGATESHAP_SD_PATH", raising=False)
    monkeypatch.setenv("SURROGATESHAP_DATA", str(tmp_path))
    reason = get_task("dermoscopy-sites").data_missing()
    assert str(tmp_path / "dermoscopy" / "metadata.csv") in reason
    root = _fixture(tmp_path / "dermoscopy")
    (root / "melanoma_classifier.pt").unlink()
    task = get_task("dermoscopy-sites")
    assert task.players == ("H1", "H2", "H3")
    reason = task.data_missing()
    assert "melanoma classifier" in reason and "sex classifier" not in reason and "model_path" in reason
    with pytest.raises(DataMissingError, match="model_path"):
        task.family
    with pytest.raises(ValueError, match=r"planted sites \['H9'\]"):
        get_task("dermoscopy-sites", planted=("H9",)).planted_sites
    assert get_task("dermoscopy-sites", planted=("H3", "H1")).planted_sites.tolist() == [0, 2]
    assert task.planted_sites is None


def test_dermoscopy_pipeline_end_to_end_on_tiny_components(tmp_path):
    """Stable Diffusion + LoRA on tiny random parts built from config: units are the
    sites' prompts, a site's LoRA trains on its own images, the classifiers read from
    the data folder score generated images, and one proxy and one retraining-game
    evaluation give the sex-melanoma correlation."""
    for mod in ("diffusers", "transformers", "peft"):
        pytest.importorskip(mod)
    root = _fixture(tmp_path / "data")
    task = get_task("dermoscopy-sites", scale="ci", cache_dir=tmp_path / "cache", data_dir=str(root),
                    n_samples=6, bank_per_unit=3, sample_batch=6, device="cpu")
    assert task.data_missing() is None and task.players == ("H1", "H2", "H3")
    assert task.units == tuple(f"a dermoscopic lesion from hospital {s}" for s in ("H1", "H2", "H3"))
    assert task.train(np.array([1, 0, 0], bool), 0)[0].info["n_items"] == 2
    # the classifiers are the folder's files: red -> sex, green -> melanoma
    red_green = np.zeros((2, 3, 16, 16), np.float32)
    red_green[0, 0], red_green[1, 1] = 1.0, 1.0
    calls = task.featurizer(red_green, [task.units[0]] * 2)
    assert calls["sex"].tolist() == [1, 0] and calls["melanoma"].tolist() == [0, 1]
    masks = np.array([[1, 0, 1], [0, 0, 0]], bool)
    proxy = task.proxy_game("sex_melanoma_correlation")(masks)
    assert len(task.scorer.sample_bank().done()) == 3 * 3
    rec = task.retraining_game("sex_melanoma_correlation").records(masks[:1])[0]
    assert np.isfinite(proxy).all() and -1 <= rec["sex_melanoma_correlation"] <= 1
    assert proxy[1] == pytest.approx(task.score(task.empty_stats())["sex_melanoma_correlation"])


@pytest.mark.gpu
def test_real_dermoscopy_audit_one_proxy_and_one_retraining(tmp_path):
    """With the real folder ($SURROGATESHAP_DATA/dermoscopy) and Stable Diffusion
    (SURROGATESHAP_SD_PATH) on CUDA: a short fine-tuning and a small bank give finite
    correlations in [-1, 1]."""
    task = get_task("dermoscopy-sites", cache_dir=tmp_path, steps=20, n_samples=16, bank_per_unit=4,
                    sample_steps=10, device="cuda")
    missing = task.data_missing()
    if missing or not torch.cuda.is_available():
        pytest.skip(missing or "needs a CUDA device")
    masks = np.zeros((2, task.n_players), bool)
    masks[0, 0] = masks[1] = True
    proxy = task.proxy_game("sex_melanoma_correlation")(masks)
    rec = task.retraining_game("sex_melanoma_correlation").records(masks[:1])[0]
    assert (np.abs(proxy) <= 1).all() and -1 <= rec["sex_melanoma_correlation"] <= 1
