"""Text-to-image machinery on tiny random components (mechanics, not quality): LoRA
fine-tuning changes only the LoRA, sampling, local loading, the resumable sample bank,
the proxy and retraining games, and the utilities' weighted statistics."""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from surrogateshap.tasks.features.clip import AestheticHead, CLIPImageEmbedder  # noqa: E402
from surrogateshap.tasks.data.images import DataMissingError  # noqa: E402
from surrogateshap.tasks.common import image_seed  # noqa: E402
from surrogateshap.tasks.features.sample_bank import BankFeatures, SampleBank, bank_cost
from surrogateshap.tasks.base import DiffusionTask  # noqa: E402
from surrogateshap.tasks.config import T2IConfig
from surrogateshap.tasks.data.t2i import T2IDataset, T2IItem
from surrogateshap.tasks.data.t2i import load_images
from surrogateshap.tasks.models.lora import fine_tune_lora
from surrogateshap.tasks.models.pipelines import T2IPipeline as T2IFamily
from surrogateshap.tasks.features.lpips import LPIPS  # noqa: E402
from surrogateshap.tasks.features.t2i import FeatureSet, T2IFeaturizer, diversity_entropy, t2i_utility, weighted_quantile


def _items(n=4, players=2, size=(20, 24), seed=0):
    rng = np.random.default_rng(seed)
    return [T2IItem(rng.integers(0, 256, (*size, 3), dtype=np.uint8), i % players, f"a painting by artist {i % players}")
            for i in range(n)]


class _Embed:
    """A fixed random projection of 4x4-pooled pixels: an injected stand-in for CLIP."""

    def __init__(self, dim=8, seed=0):
        self.w = torch.randn(48, dim, generator=torch.Generator().manual_seed(seed))

    def __call__(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) @ self.w


def _featurizer(dim=8):
    g = torch.Generator().manual_seed(1)
    head = AestheticHead.from_state_dict({"weight": torch.randn(1, dim, generator=g), "bias": torch.tensor([5.0])})
    return T2IFeaturizer(_Embed(dim), head, name="test")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models are overhead-bound: one thread is fastest, and far faster on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def sd():
    return T2IFamily.tiny("sd")


# --- items and images ---------------------------------------------------------------
def test_dataset_validates_items_and_units():
    ds = T2IDataset("toy", ("a", "b"), [(np.zeros((4, 4, 3), np.uint8), 0, "p0"), (np.zeros((4, 4), np.uint8), 1, "p1"),
                                         (np.zeros((3, 4, 4), np.float32), 1, "p0")])
    assert ds.items[0].prompt == "p0" and ds.item_contributor.tolist() == [0, 1, 1]
    units, item_unit = ds.unit_names, ds.item_unit
    assert units == ("p0", "p1") and item_unit.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="contributor"):
        T2IDataset("toy", ("a",), [(np.zeros((4, 4, 3), np.uint8), 1, "p")])
    with pytest.raises(ValueError, match="no prompt"):
        T2IDataset("toy", ("a",), [(np.zeros((4, 4, 3), np.uint8), 0, " ")])
    with pytest.raises(ValueError, match="without items"):
        T2IDataset("toy", ("a", "b"), [(np.zeros((4, 4, 3), np.uint8), 0, "p")])


def test_load_images_resizes_crops_and_reads_files(tmp_path):
    from PIL import Image

    a = np.zeros((20, 40, 3), np.uint8)
    a[:, 10:30] = 255  # a white centre band: the centre crop keeps only it
    Image.fromarray(a).save(tmp_path / "x.png")
    x = load_images([tmp_path / "x.png", a], 8)
    assert x.shape == (2, 3, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.allclose(x[0], x[1]) and float(x[0].mean()) > 0.95
    with pytest.raises(DataMissingError, match="nope.png"):
        load_images([tmp_path / "nope.png"], 8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_images([np.full((3, 4, 4), 2.0, np.float32)], 4)


# --- weighted statistics and metrics -------------------------------------------------
def test_weighted_quantile_matches_numpy_and_repetition():
    rng = np.random.default_rng(0)
    v = rng.normal(size=37)
    for q in (0.0, 0.1, 0.5, 0.75, 0.9, 1.0):
        assert weighted_quantile(v, np.ones_like(v), q) == np.quantile(v, q, method="inverted_cdf")
    reps = rng.integers(1, 4, size=37)
    for q in (0.5, 0.75, 0.9):
        assert weighted_quantile(v, reps, q) == np.quantile(np.repeat(v, reps), q, method="inverted_cdf")


def test_diversity_entropy_counts_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 10
    even = np.concatenate([c + rng.normal(0, 0.1, (25, 4)) for c in centres])
    assert diversity_entropy(even, k=4) == pytest.approx(np.log(4), abs=1e-9)
    w = np.repeat([0.7, 0.1, 0.1, 0.1], 25)
    p = np.array([0.7, 0.1, 0.1, 0.1])
    assert diversity_entropy(even, w, k=4) == pytest.approx(-(p * np.log(p)).sum(), abs=1e-9)
    with pytest.raises(ValueError, match="at least 20"):
        diversity_entropy(even[:10], k=20)


def test_aesthetic_head_loads_linear_and_mlp_stacks(tmp_path):
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(8, 1)
    torch.save(lin.state_dict(), tmp_path / "linear.pth")
    e = torch.randn(5, 8, generator=g)
    head = AestheticHead.from_file(tmp_path / "linear.pth")
    assert np.allclose(head(e), lin(e).detach().numpy()[:, 0], atol=1e-6)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Dropout(0.2), torch.nn.Linear(6, 3), torch.nn.Linear(3, 1))
    head = AestheticHead.from_state_dict({f"layers.{k}": v for k, v in mlp.state_dict().items()})
    assert np.allclose(head(e), mlp.eval()(e).detach().numpy()[:, 0], atol=1e-6)
    with pytest.raises(DataMissingError, match="missing.pth"):
        AestheticHead.from_file(tmp_path / "missing.pth")


def test_clip_embedder_loads_a_local_transformers_folder(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, projection_dim=16)
    model = CLIPVisionModelWithProjection(cfg).eval()
    model.save_pretrained(tmp_path / "clip")
    emb = CLIPImageEmbedder.from_transformers(tmp_path / "clip")
    x = torch.rand(3, 3, 40, 48)
    out = emb(x)
    assert out.shape == (3, 16)
    ref = model(pixel_values=emb.preprocess(x)).image_embeds
    assert torch.allclose(out, ref, atol=1e-5)
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(DataMissingError, match="config.json"):
        CLIPImageEmbedder.from_transformers(tmp_path / "none")


def test_lpips_is_a_distance_and_loads_its_backbone(tmp_path):
    torch.manual_seed(0)
    rand = LPIPS()  # random backbone: mechanics only
    a, b = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    d = rand(a, b)
    assert d.shape == (3,) and (d > 0).all() and np.allclose(d, rand(b, a)) and np.allclose(rand(a, a), 0)
    torch.save({"features." + k: v for k, v in rand.net.features.state_dict().items()}
               | {"classifier.1.weight": torch.zeros(2, 2)}, tmp_path / "alex.pth")
    loaded = LPIPS(tmp_path / "alex.pth")
    assert np.allclose(loaded(a, b), d, atol=1e-6)
    assert all((lin.weight >= 0).all() for lin in loaded.net.lins)  # torchmetrics' heads
    with pytest.raises(FileNotFoundError, match="alexnet-owt"):
        LPIPS(tmp_path / "missing.pth")
    fz = T2IFeaturizer(lpips=loaded, references={"u": a[0]})
    out = fz(torch.stack([a[0], b[0]]), ["u", "u"])
    assert out["lpips"][0] == pytest.approx(0, abs=1e-6) and out["lpips"][1] > 0
    assert t2i_utility("neg_lpips", FeatureSet(out)) == pytest.approx(-out["lpips"].mean())


# --- the sample bank -------------------------------------------------------------------
def _fake_generate(calls, fail_after=None):
    def generate(pairs):
        if fail_after is not None and len(calls) >= fail_after:
            raise RuntimeError("interrupted")
        calls.append(list(pairs))
        seeds = np.array([image_seed(0, u, j) for u, j in pairs], dtype=np.float64)
        return {"aesthetic": seeds % 97, "embedding": np.stack([np.sin(seeds * k) for k in (1, 2, 3)], 1)}

    return generate


def test_bank_resumes_without_duplicates_and_refuses_other_settings(tmp_path):
    units, per = ["u0", "u1", "u2"], 5
    full = SampleBank(tmp_path / "full", {"m": 1})
    assert full.build(units, per, _fake_generate([]), batch_size=4, progress=False) == 15
    ref = full.features(units, per)

    bank = SampleBank(tmp_path / "b", {"m": 1})
    calls = []
    with pytest.raises(RuntimeError, match="interrupted"):
        bank.build(units, per, _fake_generate(calls, fail_after=2), batch_size=4, progress=False)
    assert len(bank.done()) == 8
    with pytest.raises(ValueError, match="lacks 7 of 15"):
        bank.features(units, per)
    calls2 = []
    assert SampleBank(tmp_path / "b", {"m": 1}).build(units, per, _fake_generate(calls2), batch_size=4,
                                                      progress=False) == 7
    done_first = {p for c in calls for p in c}
    assert not done_first & {p for c in calls2 for p in c}  # nothing generated twice
    assert SampleBank(tmp_path / "b", {"m": 1}).build(units, per, _fake_generate([]), progress=False) == 0
    got = bank.features(units, per)
    for k in ref.arrays:
        assert np.array_equal(got.arrays[k], ref.arrays[k])
    # a second writer's copy of a pair is ignored, never counted twice
    bank._write([("u0", 0)], {"aesthetic": np.array([-1.0]), "embedding": np.zeros((1, 3))})
    assert len(bank.done()) == 15 and np.array_equal(bank.features(units, per).arrays["aesthetic"], ref.arrays["aesthetic"])
    with pytest.raises(ValueError, match="other settings"):
        SampleBank(tmp_path / "b", {"m": 2})


def test_bank_mixture_weights_and_resampling():
    rng = np.random.default_rng(0)
    arrays = {"aesthetic": rng.normal(size=(3, 4)), "embedding": rng.normal(size=(3, 4, 2))}
    bank = BankFeatures(("a", "b", "c"), arrays)
    fs = bank.mixture([0.5, 0.5, 0.0])
    assert len(fs) == 8 and np.allclose(fs.weights, 1 / 8)
    assert t2i_utility("aesthetic", fs) == pytest.approx(arrays["aesthetic"][:2].mean())
    fs = bank.mixture([0.75, 0.25, 0.0])
    assert t2i_utility("aesthetic", fs) == pytest.approx(0.75 * arrays["aesthetic"][0].mean()
                                                         + 0.25 * arrays["aesthetic"][1].mean())
    fs = bank.mixture([0.75, 0.25, 0.0], n=4)  # counts 3, 1: the first images of each unit
    assert np.array_equal(fs.features["aesthetic"], np.r_[arrays["aesthetic"][0, :3], arrays["aesthetic"][1, :1]])
    with pytest.raises(ValueError, match="per_unit >= 5"):
        bank.mixture([1.0, 0, 0], n=5)


def test_bank_cost():
    c = bank_cost(n_units=258, per_unit=50, n_coalitions=300, samples_per_coalition=50, n_seeds=3)
    assert c["bank"] == 12900 and c["regenerate"] == 45000 and c["saved"] == 32100
    assert c["break_even_coalitions"] == 86 and c["ratio"] == pytest.approx(45000 / 12900)


# --- the SD family -----------------------------------------------------------------------
def test_sd_lora_changes_only_lora_and_is_seeded(sd):
    items = _items()
    base = sd.base_state()
    a = fine_tune_lora(sd, items, steps=3, rank=4, lr=1e-2, seed=0, batch_size=2)
    after = sd.base_state()
    assert base.keys() == after.keys() and all(torch.equal(base[k], after[k]) for k in base)
    assert a.state and all("lora_" in k for k in a.state)
    assert {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in a.state} == {"to_q", "to_k", "to_v", "0"}
    assert all(v.abs().sum() > 0 for k, v in a.state.items() if "lora_B" in k)  # trained from B = 0
    assert a.spec.rank == 4 and next(v for k, v in a.state.items() if "lora_A" in k).shape[0] == 4
    fine_tune_lora(sd, _items(seed=1), steps=2, rank=4, lr=1e-2, seed=5, batch_size=2)  # history in between
    again = fine_tune_lora(sd, items, steps=3, rank=4, lr=1e-2, seed=0, batch_size=2)
    assert all(torch.equal(a.state[k], again.state[k]) for k in a.state)
    other = fine_tune_lora(sd, items, steps=3, rank=4, lr=1e-2, seed=1, batch_size=2)
    assert not all(torch.equal(a.state[k], other.state[k]) for k in a.state)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_lora_bar_shows_on_a_terminal_only_as_the_other_trainings_bars(sd, monkeypatch):
    from surrogateshap.tasks.models import mlp

    monkeypatch.setattr(mlp, "BAR_DELAY", 0.0)  # the bar waits for long trainings; this one is short
    for stream, shown in ((_Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        fine_tune_lora(sd, _items(), steps=2, rank=4, lr=1e-2, seed=0, batch_size=2, progress=True)
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
        if shown:
            assert "LoRA" in stream.getvalue() and "2/2" in stream.getvalue()
        else:  # a log file or a pipe: quiet
            assert stream.getvalue() == ""


def test_sd_samples_images_per_seed(sd, tmp_path):
    a = fine_tune_lora(sd, _items(), steps=2, rank=4, lr=1e-2, seed=0, batch_size=2)
    x = sd.sample(["a cat", "a dog", "a cat"], [1, 2, 1], adapter=a, batch_size=2)
    assert x.shape == (3, 3, 16, 16) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.allclose(x[0], x[2], atol=1e-5)  # same prompt and seed, other batch
    assert not torch.allclose(x[0], x[1])
    base = sd.sample(["a cat"], [1], adapter=None)
    assert not torch.allclose(base[0], x[0], atol=1e-4)  # the adapter is used ...
    assert torch.allclose(sd.sample(["a cat"], [1], adapter=a)[0], x[0], atol=1e-5)  # ... and reloads
    a.save(tmp_path / "a.pt")
    from surrogateshap.tasks.models.lora import LoRAAdapter

    b = LoRAAdapter.load(tmp_path / "a.pt")
    assert b.spec == a.spec and b.digest() == a.digest()


def test_local_pipeline_folder_loads_and_missing_one_is_named(sd, tmp_path):
    with pytest.raises(DataMissingError, match=r"model_index.json.*unet"):
        T2IFamily.from_pretrained("sd", tmp_path / "none")
    fresh = T2IFamily.tiny("sd", seed=3)
    fresh.pipe.save_pretrained(tmp_path / "sd")
    fam = T2IFamily.from_pretrained("sd", tmp_path / "sd", device="cpu", sample_steps=2)
    assert fam.resolution == 16 and type(fam.pipe.scheduler).__name__ == "DDIMScheduler"
    want, got = fresh.base_state(), fam.base_state()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert fam.sample(["a cat"], [3]).shape == (1, 3, 16, 16)


# --- FLUX ------------------------------------------------------------------------------
def test_flux_lora_changes_only_lora_and_samples():
    fam = T2IFamily.tiny("flux")
    base = fam.base_state()
    a = fine_tune_lora(fam, _items(), steps=2, rank=4, lr=1e-2, seed=0, batch_size=2)
    after = fam.base_state()
    assert all(torch.equal(base[k], after[k]) for k in base)
    assert any("add_q_proj" in k for k in a.state) and all("lora_" in k for k in a.state)
    x = fam.sample(["a red shoe", "a red shoe"], [4, 4], adapter=a, batch_size=1)
    assert x.shape == (2, 3, 16, 16) and torch.allclose(x[0], x[1], atol=1e-5)


# --- the task and its games --------------------------------------------------------------
class _ToyT2I(DiffusionTask):
    name = "toy-t2i"
    scorer_name = "t2i"
    players = ("artist0", "artist1", "artist2")
    utilities = ("aesthetic", "aesthetic_q50", "aesthetic_q90", "diversity")

    def load_dataset(self):
        return T2IDataset(self.name, self.players, _items(n=6, players=3))


@pytest.fixture
def toy(sd, tmp_path):
    cfg = T2IConfig.preset("ci", n_samples=6, bank_per_unit=6, sample_batch=4, device="cpu")
    return _ToyT2I(cfg, cache_dir=tmp_path, family=sd, featurizer=_featurizer())


def test_proxy_game_from_bank_matches_regeneration(toy):
    assert toy.units == ("a painting by artist 0", "a painting by artist 1", "a painting by artist 2")
    masks = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], bool)
    assert np.allclose(toy.unit_weights(masks[1]), [0.5, 0.5, 0])
    bank_game = toy.proxy_game("aesthetic", samples=6)
    v = bank_game(masks)
    assert np.isfinite(v).all() and bank_game.cost_of(masks) == 0
    # the bank's images are the regenerate protocol's images (same per-image seeds)
    regen = toy.proxy_game("aesthetic", mode="regenerate", seed=toy.config.bank_seed)
    assert np.allclose(regen(masks), v, atol=1e-4) and regen.cost_of(masks) == 12
    weighted = toy.proxy_game("aesthetic")(masks[:2])  # the whole bank, weighted
    bank = toy.bank_stats()
    a = bank.arrays["aesthetic"]
    assert np.allclose(weighted, [a[0].mean(), a[:2].mean()])
    assert v[2] == pytest.approx(toy.score(toy.empty_stats())["aesthetic"])
    assert toy.scorer.build_bank(progress=False) == 0  # built once


def test_bank_build_of_a_task_resumes(toy, monkeypatch):
    calls = []
    real = toy.family.pipeline.sample

    def flaky(prompts, seeds, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(prompts))
        return real(prompts, seeds, **kw)

    monkeypatch.setattr(toy.family.pipeline, "sample", flaky)
    with pytest.raises(KeyboardInterrupt):
        toy.scorer.build_bank(progress=False)
    assert len(toy.scorer.sample_bank().done()) == 8
    monkeypatch.setattr(toy.family.pipeline, "sample", real)
    assert toy.scorer.build_bank(progress=False) == 10
    assert len(toy.scorer.sample_bank().done()) == 18


def test_flux_task_retraining_and_proxy(tmp_path):
    cfg = T2IConfig.preset("ci", family="flux", n_samples=4, bank_per_unit=4, sample_batch=4, device="cpu")
    task = _ToyT2I(cfg, cache_dir=tmp_path, family=T2IFamily.tiny("flux"), featurizer=_featurizer())
    masks = np.array([[0, 1, 1], [1, 1, 1]], bool)
    v = task.retraining_game("aesthetic")(masks)
    p = task.proxy_game("aesthetic", samples=4)(masks)
    assert np.isfinite(v).all() and np.isfinite(p).all()
    assert task.full_model[0].kind == "flux" and task.full_model[0].info["n_items"] == 6


def test_retraining_game_evaluates_a_coalition(toy):
    game = toy.retraining_game("aesthetic", seed=0)
    masks = np.array([[1, 0, 1], [0, 0, 0]], bool)
    v = game(masks)
    rec = game.records(masks[:1])[0]
    assert set(toy.utilities) <= set(rec) and rec["trainings"] == 1
    assert v[0] == rec["aesthetic"] and np.isfinite(v).all()
    assert rec["aesthetic_q90"] >= rec["aesthetic_q50"]
    assert v[1] == pytest.approx(toy.score(toy.empty_stats())["aesthetic"])
    # the model of S is trained on S's items only
    assert toy.train(np.array([0, 1, 0], bool), 0)[0].info["n_items"] == 2


@pytest.mark.parametrize("kind", ["sd", "flux"])
def test_lora_family_gives_trak_its_minimum(kind, sd, tmp_path):
    """The LoRA family's model access: gradients with respect to the adapter only, a
    loss pure in those parameters at a given timestep and noise, items as latents with
    their prompt's index; TRAK and D-TRAK run on it from the players alone."""
    from torch.func import grad, vmap

    from surrogateshap import get_estimator
    from surrogateshap.model_access import DenoiserAccess, ModelAccess

    pipe = sd if kind == "sd" else T2IFamily.tiny("flux")
    cfg = T2IConfig.preset("ci", family=kind, n_samples=4, bank_per_unit=4, sample_batch=4, device="cpu")
    task = _ToyT2I(cfg, cache_dir=tmp_path, family=pipe, featurizer=_featurizer())
    access = task.model_access()
    assert isinstance(access, ModelAccess) and not isinstance(access, DenoiserAccess)
    params = access.params()
    assert params and all("lora_" in k for k in params)
    idx, x0, cond = next(access.item_batches(4))
    assert x0.shape[0] == len(idx) == 4 and cond.tolist() == task.item_unit[idx].tolist()
    t = torch.tensor([1, access.T - 1])
    noise = torch.randn((2, *x0.shape[1:]), generator=torch.Generator().manual_seed(0))
    loss = access.loss(params, x0[:2], cond[:2], t, noise)
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    # per-example gradients of the adapter, as the TRAK family takes them
    g = vmap(grad(lambda p, x, c, e: access.loss(p, x[None], c[None], t[:1], e[None]).sum()),
             in_dims=(None, 0, 0, 0))(params, x0[:2], cond[:2], noise)
    assert set(g) == set(params) and all(torch.isfinite(v).all() for v in g.values())
    # a loss that depends on the adapter: other LoRA weights give another loss
    moved = {k: v + 0.1 for k, v in params.items()}
    assert not torch.allclose(access.loss(moved, x0[:2], cond[:2], t, noise), loss)
    for name in ("trak", "d-trak"):
        att = get_estimator(name, proj_dim=8, n_samples=2, n_timesteps=1, batch_size=4).estimate(
            task.players, 0, seed=0, model=access)
        assert att.values.shape == (3,) and np.isfinite(att.values).all() and att.n_evaluations == 0


# --- real weights (reads paths from the environment; skips without them) --------------------
@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["sd", "flux"])
def test_real_pipeline_lora_and_aesthetic(kind, tmp_path):
    path = os.environ.get({"sd": "SURROGATESHAP_SD_PATH", "flux": "SURROGATESHAP_FLUX_PATH"}[kind])
    if not path or not torch.cuda.is_available():
        pytest.skip(f"set SURROGATESHAP_{kind.upper()}_PATH to a local diffusers folder and use a CUDA device")
    fam = T2IFamily.from_pretrained(kind, path, dtype="bfloat16", device="cuda",
                                    resolution=256 if kind == "sd" else 512, sample_steps=10)
    items = _items(n=4, size=(300, 300))
    targets = [(n, p) for n, p in fam.denoiser.named_parameters() if n.endswith("to_q.weight")][:8]
    before = [p.detach().clone() for _, p in targets]
    a = fine_tune_lora(fam, items, steps=5, rank=8, lr=1e-4, seed=0, batch_size=2)
    assert all("lora_" in k for k in a.state) and np.isfinite(a.info["losses"]).all()
    after = dict(fam.denoiser.named_parameters())
    assert all(torch.equal(b, after[n.replace("to_q.weight", "to_q.base_layer.weight")])
               for (n, _), b in zip(targets, before))
    x = fam.sample(["a painting of a garden"] * 2, [0, 1], adapter=a, batch_size=2)
    assert x.shape == (2, 3, fam.resolution, fam.resolution)
    clip, head = os.environ.get("SURROGATESHAP_CLIP_PATH"), os.environ.get("SURROGATESHAP_AESTHETIC_HEAD")
    if clip and head:
        fz = T2IFeaturizer(CLIPImageEmbedder.from_transformers(clip, device="cuda"), AestheticHead.from_file(head))
        scores = fz(x, ["u", "u"])["aesthetic"]
        assert np.isfinite(scores).all() and 0 < scores.mean() < 10
