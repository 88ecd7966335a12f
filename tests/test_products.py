"""Contributors that are not labels: the unit seam (mixing per-unit banks == pooling the
coalition's samples), fashion-brands, the Fashion-Product loader, the planted marker of
spurious-sites, and precision@k."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from surrogateshap.metrics import precision_at_k  # noqa: E402
from surrogateshap.tasks import get_task  # noqa: E402
from surrogateshap.tasks.base import DiffusionTask  # noqa: E402
from surrogateshap.tasks.data.images import FASHION_MNIST_DIR, DataMissingError  # noqa: E402
from surrogateshap.tasks.data.fashion_product import STYLES_COLUMNS, load_fashion_product, read_styles, subsample_size  # noqa: E402
from surrogateshap.tasks.features.statistics import LabelStats, mix_stats, stats_from_features, utility_from_stats  # noqa: E402

needs_fashion = pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz").exists(),
                                   reason="install dataset-fashion-mnist (apt)")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the ci datasets' feature networks train once."""
    return tmp_path_factory.mktemp("products-cache")


# --- the unit seam ------------------------------------------------------------------
class _UnitTask(DiffusionTask):
    """3 contributors, 5 units shared between them; banks = fixed per-unit samples."""

    name = "unit-fake"
    players = ("a", "b", "c")

    def __init__(self, banks, real, utilities):
        super().__init__(config=None)
        self.banks, self.real, self.utilities = banks, real, utilities

    @property
    def units(self):
        return tuple(f"u{i}" for i in range(5))

    @property
    def item_contributor(self):
        return np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2])

    @property
    def item_unit(self):
        return np.array([0, 1, 1, 3, 1, 2, 4, 0, 0, 0, 4, 4, 3])

    def bank_stats(self):
        return self.banks

    def real_stats(self):
        return self.real

    def empty_stats(self):
        return self.banks[0]

    def retrain_stats(self, masks, seed):
        raise NotImplementedError

    def regenerate_stats(self, mask, seed):
        raise NotImplementedError


def test_unit_weighting_equals_pooling_the_coalitions_samples():
    """The proxy's per-unit mixture == statistics of the pooled samples, each unit's set
    repeated once per coalition item of that unit (exact proportions)."""
    import surrogateshap.tasks.catalog.spurious_sites  # noqa: F401  (registers marker_correlation)

    rng = np.random.default_rng(0)
    d, c, B = 3, 4, 6
    cents = rng.normal(size=(5, d))
    samples = []
    for u in range(5):
        f, lg = rng.normal(size=(B, d)) + u, rng.normal(size=(B, c)) * (u + 1)
        sc = {"fidelity_dist": rng.random(B), "marker": rng.random(B) < 0.5, "target": rng.random(B) < 0.3}
        sc["marker_target"] = sc["marker"] & sc["target"]
        samples.append((f, lg, sc))
    banks = [stats_from_features(f, lg, cents, sc) for f, lg, sc in samples]
    real = stats_from_features(rng.normal(size=(40, d)), rng.normal(size=(40, c)), cents)
    utilities = ("neg_fid", "inception_score", "coverage", "diversity", "neg_fidelity", "marker_correlation")
    task = _UnitTask(banks, real, utilities)
    masks = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 1], [1, 0, 1]], bool)
    w = task.unit_weights(masks)
    games = {u: task.proxy_game(u)(masks) for u in utilities}
    for k, m in enumerate(masks):
        n_su = np.bincount(task.item_unit[m[task.item_contributor]], minlength=5)
        np.testing.assert_allclose(w[k], n_su / n_su.sum(), rtol=0, atol=0)
        pool = [np.concatenate([np.tile(samples[u][j], (n, 1)) if j < 2 else np.tile(samples[u][j], n)
                                for u, n in enumerate(n_su) if n]) for j in range(2)]
        pool_sc = {s: np.concatenate([np.tile(samples[u][2][s], n) for u, n in enumerate(n_su) if n])
                   for s in samples[0][2]}
        pooled = stats_from_features(pool[0], pool[1], cents, pool_sc)
        mixed = mix_stats(banks, w[k])
        for field in ("mean", "second", "pbar", "modes"):
            np.testing.assert_allclose(getattr(mixed, field), getattr(pooled, field), rtol=1e-12, atol=1e-12)
        assert mixed.neg_entropy == pytest.approx(pooled.neg_entropy, abs=1e-12)
        assert mixed.scores == pytest.approx(pooled.scores, abs=1e-12)
        # the mixture keeps the banks' count (FID's n - 1), not the replicated pool's
        pooled = dataclasses.replace(pooled, count=mixed.count)
        for u in utilities:
            assert games[u][k] == pytest.approx(utility_from_stats(u, pooled, real), rel=1e-9, abs=1e-12)


def test_default_units_are_contributors_and_weights_are_pi_s():
    from fake_tasks import FakeTask

    task = FakeTask()
    assert task.units == task.players and np.array_equal(task.item_unit, task.item_contributor)
    masks = np.array([[1, 0, 1, 1], [0, 1, 0, 0], [1, 1, 1, 1]], bool)
    old = masks * task.counts()
    assert np.array_equal(task.unit_weights(masks), old / old.sum(1, keepdims=True))  # bitwise
    with pytest.raises(ValueError, match="empty coalition"):
        task.unit_weights(np.zeros((1, 4), bool))


def test_scores_must_agree_across_banks():
    a = LabelStats(np.zeros(1), np.eye(1), np.ones(2) / 2, -0.5, np.ones(2) / 2, 5, {"x": 1.0})
    b = dataclasses.replace(a, scores={})
    with pytest.raises(ValueError, match="disagree"):
        mix_stats([a, b], np.array([0.5, 0.5]))
    with pytest.raises(KeyError, match="fidelity_dist"):
        utility_from_stats("neg_fidelity", b, b)


# --- precision@k --------------------------------------------------------------------
def test_precision_at_k():
    v = np.array([5.0, 1.0, 4.0, 3.0, 2.0])
    assert precision_at_k(v, [0, 2], 2) == 1.0
    assert precision_at_k(v, [0, 2], 3) == pytest.approx(2 / 3)
    assert precision_at_k(v, np.array([False, True, False, False, True]), 2) == 0.0
    assert precision_at_k(-v, [1, 4], 2) == 1.0
    # ties at the k-th value share the places: 1 planted among 4 tied, 2 places
    assert precision_at_k(np.ones(4), [0], 2) == pytest.approx(0.25)
    assert precision_at_k(np.array([3.0, 1, 1, 1]), [1], 2) == pytest.approx(1 / 6)
    for bad in (0, 6, 2.0):
        with pytest.raises(ValueError, match="k must"):
            precision_at_k(v, [0], bad)
    with pytest.raises(ValueError, match="distinct player indices"):
        precision_at_k(v, [0, 7], 1)
    with pytest.raises(ValueError, match="mask"):
        precision_at_k(v, np.array([True, False]), 1)


# --- fashion-product loader ---------------------------------------------------------
def _write_styles(root, rows, images=True):
    """styles.csv in the real layout (unquoted; display names may hold commas) + images/."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = [",".join(STYLES_COLUMNS)]
    for item, name in rows:
        lines.append(f"{item},Men,Apparel,Topwear,Tshirts,Black,Summer,2012,Casual,{name}")
        if images:
            from PIL import Image

            Image.new("RGB", (4, 4), (item % 256, 0, 0)).save(root / "images" / f"{item}.jpg")
    (root / "styles.csv").write_text("\n".join(lines) + "\n")


FIXTURE = ([(100 + i, f"Nike Men Running Shoe {i}") for i in range(8)]
           + [(200, "Nike Men, Black, Track Pants")]  # commas in the name
           + [(300 + i, f"Puma Unisex Cap {i}") for i in range(5)]
           + [(400 + i, f"Adidas Women Top {i}") for i in range(5)]
           + [(500 + i, f"Roadster Men Jeans {i}") for i in range(3)]
           + [(600, "")])  # no display name: no brand, no prompt


def test_fashion_product_brands_ids_prompts(tmp_path):
    _write_styles(tmp_path, FIXTURE)
    rows = read_styles(tmp_path / "styles.csv")
    assert len(rows) == len(FIXTURE) and rows[8].name == "Nike Men, Black, Track Pants" and rows[8].line == 10
    assert rows[8].fields["usage"] == "Casual"
    data = load_fashion_product(tmp_path, n_brands=3, fraction=1.0)
    # top-3 by count; Adidas and Puma tie at 5 and go by name
    assert data.brands == ("Nike", "Adidas", "Puma")
    per_brand = {b: data.ids[data.brand_index == i].tolist() for i, b in enumerate(data.brands)}
    assert per_brand == {"Nike": [100, 101, 102, 103, 104, 105, 106, 107, 200],
                         "Adidas": [400, 401, 402, 403, 404], "Puma": [300, 301, 302, 303, 304]}
    names = dict(FIXTURE)
    assert list(data.prompts) == [names[i] for i in data.ids]
    assert [p.name for p in data.paths] == [f"{i}.jpg" for i in data.ids]
    assert data.items[0] == (tmp_path / "images" / "100.jpg", 0, "Nike Men Running Shoe 0")
    assert data.skipped == ((len(FIXTURE) + 1, 600),)
    with pytest.raises(ValueError, match=r"line 24: id 600 has no productDisplayName"):
        load_fashion_product(tmp_path, n_brands=3, skip_unnamed=False)
    # the brand function is configurable: first two tokens
    two = load_fashion_product(tmp_path, n_brands=2, fraction=1.0, brand_fn=lambda s: " ".join(s.split()[:2]))
    assert two.brands == ("Nike Men", "Adidas Women")
    # units: distinct prompts; items with one prompt share a unit
    assert len(data.units) == len(data.prompts) and data.item_unit.tolist() == list(range(len(data.prompts)))


def test_fashion_product_subsample_is_seeded_per_brand(tmp_path):
    assert [subsample_size(n, 0.25) for n in (1, 2, 4, 5, 6, 9, 10)] == [1, 1, 1, 1, 2, 2, 3]
    _write_styles(tmp_path, FIXTURE)
    a = load_fashion_product(tmp_path, n_brands=4, fraction=0.25, seed=3)
    b = load_fashion_product(tmp_path, n_brands=4, fraction=0.25, seed=3)
    assert np.array_equal(a.ids, b.ids) and a.prompts == b.prompts
    full = load_fashion_product(tmp_path, n_brands=4, fraction=1.0)
    for i, brand in enumerate(a.brands):
        kept = a.ids[a.brand_index == i]
        owned = full.ids[full.brand_index == full.brands.index(brand)]
        assert set(kept) <= set(owned) and len(kept) == subsample_size(len(owned), 0.25)
    assert [int((a.brand_index == i).sum()) for i in range(4)] == [2, 1, 1, 1]
    seeds = {tuple(load_fashion_product(tmp_path, n_brands=4, seed=s).ids) for s in range(8)}
    assert len(seeds) > 1  # the seed matters
    # a brand's subsample does not depend on the other brands' rows
    other = tmp_path / "other"
    _write_styles(other, [r for r in FIXTURE if not 300 <= r[0] < 400] + [(700, "Zara Dress 1")])
    c = load_fashion_product(other, n_brands=2, fraction=0.25, seed=3)
    assert c.ids[c.brand_index == 0].tolist() == a.ids[a.brand_index == 0].tolist()


def test_fashion_product_errors_name_the_row_and_the_image(tmp_path):
    _write_styles(tmp_path, FIXTURE)
    text = (tmp_path / "styles.csv").read_text().splitlines()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "styles.csv").write_text("\n".join(text[:5] + ["777,Men,Apparel,Topwear"] + text[5:]) + "\n")
    with pytest.raises(ValueError, match=r"line 6: 4 fields, need 10"):
        read_styles(bad / "styles.csv")
    (bad / "styles.csv").write_text("\n".join(text[:3] + ["x7,Men,A,B,C,D,E,2012,F,Nike X"]) + "\n")
    with pytest.raises(ValueError, match=r"line 4: id 'x7' is not an integer"):
        read_styles(bad / "styles.csv")
    (bad / "styles.csv").write_text("id,gender\n1,Men\n")
    with pytest.raises(ValueError, match="line 1: expected the header"):
        read_styles(bad / "styles.csv")
    with pytest.raises(DataMissingError, match="styles.csv"):
        read_styles(tmp_path / "nowhere" / "styles.csv")
    (tmp_path / "images" / "402.jpg").unlink()
    with pytest.raises(DataMissingError, match=r"1 image\(s\).*images/402\.jpg"):
        load_fashion_product(tmp_path, n_brands=3, fraction=1.0)


def test_fashion_product_paper_config_names_missing_files(tmp_path, monkeypatch):
    from surrogateshap.tasks.catalog.fashion_product import FashionProductConfig

    cfg = FashionProductConfig.preset("paper", data_dir=str(tmp_path), model_path=str(tmp_path / "flux"))
    assert cfg.rank == 128 and cfg.n_brands == 100 and cfg.fraction == 0.25 and cfg.family == "flux"
    with pytest.raises(DataMissingError, match="Fashion Product data folder"):
        cfg.check_files()
    _write_styles(tmp_path, FIXTURE[:2])
    with pytest.raises(DataMissingError, match="FLUX.1-dev diffusers folder.*model_index.json"):
        cfg.check_files()
    assert FashionProductConfig.preset("default") == FashionProductConfig.preset("paper")
    monkeypatch.setenv("SURROGATESHAP_FLUX_PATH", str(tmp_path / "flux"))
    monkeypatch.setenv("SURROGATESHAP_DATA", str(tmp_path / "data-root"))
    env = FashionProductConfig.preset("paper")  # local paths from the environment
    assert env.model_path == str(tmp_path / "flux") and env.data_folder() == tmp_path / "data-root" / "fashion-product"
    assert FashionProductConfig.preset("paper", model_path="x").model_path == "x"
    with pytest.raises(KeyError, match="paper"):
        FashionProductConfig.preset("large")


def test_fashion_product_flux_pipeline_end_to_end_on_tiny_components(tmp_path):
    """The paper's FLUX + LoRA pipeline on tiny random parts built from config
    (mechanics, not quality): a brand's LoRA trains on its kept items only, the units
    are the display names, LPIPS compares a sample with its own prompt's training image,
    and one proxy and one retraining-game evaluation score both utilities from local
    weight files."""
    torch = pytest.importorskip("torch")
    for mod in ("diffusers", "transformers", "peft"):
        pytest.importorskip(mod)
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.features.lpips import LPIPS

    _write_styles(tmp_path / "data", FIXTURE)
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=16)).eval().save_pretrained(tmp_path / "clip")
    torch.save({"features." + k: v for k, v in LPIPS().net.features.state_dict().items()}, tmp_path / "alex.pth")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        paper = get_task("fashion-product", data_dir=str(tmp_path / "data"), n_brands=3)
        assert "model_path" in paper.data_missing()  # the paper preset names its FLUX folder
        task = get_task("fashion-product", scale="ci", cache_dir=tmp_path / "cache", data_dir=str(tmp_path / "data"),
                        n_brands=3, fraction=0.5, clip_path=str(tmp_path / "clip"),
                        lpips_backbone=str(tmp_path / "alex.pth"), n_samples=4, bank_per_unit=1, sample_batch=4,
                        device="cpu")
        assert task.data_missing() is None and task.players == ("Nike", "Adidas", "Puma")
        data = task.data
        assert task.dataset.prompts == list(data.prompts) and task.units == data.units
        np.testing.assert_array_equal(task.item_contributor, data.brand_index)
        adidas = np.array([0, 1, 0], bool)
        assert task.train(adidas, 0)[0].info["n_items"] == int((data.brand_index == 1).sum()) == 3
        assert task.family.kind == "flux"
        refs = task.scorer.unit_references()
        assert refs[data.prompts[0]] == str(data.paths[0])
        masks = np.array([[1, 0, 1], [0, 0, 0]], bool)
        p = {u: task.proxy_game(u)(masks) for u in task.utilities}
        v = task.retraining_game("diversity")(masks[:1])
        assert all(np.isfinite(x).all() for x in p.values()) and np.isfinite(v).all()
        assert p["neg_lpips"][0] < 0  # a distance, negated
        assert len(task.scorer.sample_bank().done()) == len(task.units)  # one image per display name
    finally:
        torch.set_num_threads(threads)


# --- spurious-sites -----------------------------------------------------------------
@needs_fashion
def test_marker_is_stamped_on_the_planted_sites_target_class_only():
    from surrogateshap.tasks.catalog.spurious_sites import SpuriousSitesConfig
    from surrogateshap.tasks.data.spurious_sites import spurious_sites_dataset

    cfg = SpuriousSitesConfig.preset("ci")
    ds, clean, stamped = spurious_sites_dataset(cfg)
    s = cfg.marker_size
    white = (ds.images[:, 0, :s, :s] == 1.0).all((1, 2))
    assert not (clean[:, 0, :s, :s] == 1.0).all((1, 2)).any()  # a clean corner is never white
    np.testing.assert_array_equal(white, stamped)
    np.testing.assert_array_equal(ds.images[~stamped], clean[~stamped])  # the rest untouched
    np.testing.assert_array_equal(ds.images[stamped][:, :, s:], clean[stamped][:, :, s:])
    sites = ds.contributors
    allowed = np.isin(sites, cfg.planted) & (ds.classes == cfg.target_class)
    assert not (stamped & ~allowed).any()
    for site in cfg.planted:
        pool = (sites == site) & (ds.classes == cfg.target_class)
        assert pool.sum() >= 2
        assert stamped[pool].sum() == int(np.floor(cfg.marker_fraction * pool.sum() + 0.5))
    assert ds.players[cfg.planted[0]] == f"site_{cfg.planted[0]:02d}"
    with pytest.raises(ValueError, match="planted sites"):
        spurious_sites_dataset(dataclasses.replace(cfg, planted=(1, 99)))


def test_dermoscopy_loader_errors(tmp_path):
    from surrogateshap.tasks.catalog.dermoscopy_sites import load_attribute_classifiers
    from surrogateshap.tasks.data.dermoscopy import DermoscopyConfig, load_dermoscopy

    cfg = DermoscopyConfig(data_dir=str(tmp_path))
    with pytest.raises(DataMissingError, match="metadata.csv"):
        load_dermoscopy(cfg)
    (tmp_path / "metadata.csv").write_text("image,hospital\na.jpg,H1\n")
    with pytest.raises(ValueError, match="no column 'site'"):
        load_dermoscopy(cfg)
    (tmp_path / "metadata.csv").write_text("image,site,sex\na.jpg,H1,f\nb.jpg,H2,m\nc.jpg,H1,m\n")
    with pytest.raises(DataMissingError, match=r"1 image\(s\).*c\.jpg"):
        (tmp_path / "a.jpg").touch(), (tmp_path / "b.jpg").touch()
        load_dermoscopy(cfg)
    (tmp_path / "c.jpg").touch()
    data = load_dermoscopy(cfg)
    assert data.sites == ("H1", "H2") and data.site_index.tolist() == [0, 1, 0]
    assert data.prompts[1] == "a dermoscopic lesion from hospital H2"
    with pytest.raises(DataMissingError, match="sex classifier.*sex_classifier.pt"):
        load_attribute_classifiers(cfg)


# --- fashion-brands -----------------------------------------------------------------
@needs_fashion
def test_fashion_brands_builds_with_brand_mixes_and_signatures(cache):
    from surrogateshap.tasks.data.images import FASHION_CLASSES, load_fashion_mnist, resize

    task = get_task("fashion-brands", scale="ci", cache_dir=cache)
    ds = task.dataset
    assert task.n_players >= 24 and task.counts().tolist() == [task.config.per_brand] * task.n_players
    # units = the (brand, class) pairs present; each item's unit names its brand and class
    pairs = {(int(b), int(c)) for b, c in zip(task.item_contributor, ds.classes)}
    assert task.n_units == len(pairs) < task.n_players * 10
    for i in range(0, len(ds.labels), 37):
        b, c = task.item_contributor[i], ds.classes[i]
        assert task.units[task.item_unit[i]] == f"brand_{b:02d}/{FASHION_CLASSES[c]}"
    assert task.unit_counts().sum() == len(ds.labels)
    # class mixes differ between brands
    mix = np.stack([np.bincount(ds.classes[task.item_contributor == b], minlength=10)
                    for b in range(task.n_players)]) / task.config.per_brand
    tv = 0.5 * np.abs(mix[:, None] - mix[None]).sum(-1)
    assert tv[np.triu_indices(task.n_players, 1)].min() > 0.05 and tv.max() > 0.5
    # real images: brand 0's first item is its signature on the first training image of its class
    fx, fy = load_fashion_mnist("train")
    c0 = ds.classes[0]
    expect = task.signatures[0].apply(resize(fx[np.flatnonzero(fy == c0)[:1]][:, None], 16))
    np.testing.assert_allclose(ds.images[0], expect[0], atol=1e-6)
    # signatures differ measurably: every pair changes the same 50 real images differently
    base = resize(fx[:50, None], 16)
    looks = np.stack([s.apply(base) for s in task.signatures])
    gap = np.abs(looks[:, None] - looks[None]).mean((2, 3, 4, 5))
    assert gap[np.triu_indices(task.n_players, 1)].min() > 0.01


@needs_fashion
def test_fashion_brands_fidelity_scores_the_right_unit(cache):
    task = get_task("fashion-brands", scale="ci", cache_dir=cache)
    ds = task.dataset
    x = ds.images[:40]
    f = task.features(x)[0]
    units = task.item_unit[:40]
    dist = task.sample_scores(x, f, units)["fidelity_dist"]
    # brute force: mean squared distance of normalised features to each unit's items
    allf = task.features(ds.images)[0]
    norm = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    for i in (0, 17, 39):
        own = norm(allf[task.item_unit == units[i]])
        assert dist[i] == pytest.approx(((norm(f[i : i + 1]) - own) ** 2).sum(1).mean(), rel=1e-9)
    real = task.score(task.real_stats())["neg_fidelity"]
    shuffled = np.random.default_rng(0).permutation(task.item_unit)
    wrong = utility_from_stats("neg_fidelity", task.stats_of(ds.images, shuffled), task.real_stats())
    assert real > wrong  # images are closest to their own unit's training images
    with pytest.raises(ValueError, match="unit of each image"):
        task.stats_of(x)


def _tiny(name, cache, **kw):
    return get_task(name, scale="ci", cache_dir=cache, hidden=32, blocks=1, steps=40, batch_size=32,
                    sample_steps=2, n_samples=48, models_per_batch=2, **kw)


@needs_fashion
@pytest.mark.parametrize("name, kw", [("fashion-brands", dict(bank_per_label=2)),
                                      ("spurious-sites", dict(bank_per_label=8))])
def test_tiny_retraining_and_proxy_run(cache, name, kw):
    task = _tiny(name, cache, **kw)
    n = task.n_players
    masks = np.zeros((3, n), bool)
    masks[0, :3] = True
    masks[1, -1] = True
    masks[2] = True
    for u in task.utilities:
        retrained = task.retraining_game(u, cache=False)(masks)
        proxy = task.proxy_game(u)(np.vstack([masks, np.zeros(n, bool)]))
        assert np.isfinite(retrained).all() and np.isfinite(proxy).all()
        assert proxy[-1] == task.score(task.empty_stats())[u]
    bank = task.bank_stats()
    assert len(bank) == task.n_units
    w = task.unit_weights(masks[:1])[0]
    assert w[np.unique(task.item_unit[task.members(masks[0])])].sum() == pytest.approx(1.0)
    assert utility_from_stats(task.utilities[0], mix_stats(bank, w), task.real_stats()) == pytest.approx(
        task.proxy_game(task.utilities[0])(masks[:1])[0], rel=1e-9)


@needs_fashion
def test_marker_correlation_sees_the_planted_marker(cache):
    task = get_task("spurious-sites", scale="ci", cache_dir=cache)
    real = task.score(task.real_stats())["marker_correlation"]
    assert real > 0.3
    det = task.marker_detector.predict(task.dataset.images) == 1
    assert (det == task.stamped).mean() > 0.98
    none = get_task("spurious-sites", scale="ci", cache_dir=cache, planted=())
    assert none.stamped.sum() == 0
    assert abs(none.score(none.real_stats())["marker_correlation"]) < 0.05
    assert task.planted_sites.tolist() == sorted(task.config.planted)
