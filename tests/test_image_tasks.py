"""Image tasks: loaders that fail when wrong, the diffusers UNet family (no leakage, no
dependence on the batch, per-example loss), statistics == torchmetrics, and the
coalition reference table."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from surrogateshap.game import coalition_key  # noqa: E402
from surrogateshap.tasks import get_task  # noqa: E402
from surrogateshap.tasks.data.images import CIFAR20_FINE, CIFAR20_NAMES, FASHION_MNIST_DIR, DataMissingError, cifar20_dataset, load_animal_mnist, load_cifar100_binary, load_fashion_mnist, read_idx  # noqa: E402


def _have_fashion():
    return (FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz").exists()


def _have_animal():
    import importlib.util

    return importlib.util.find_spec("animal_mnist") is not None


needs_fashion = pytest.mark.skipif(not _have_fashion(), reason="install dataset-fashion-mnist (apt)")
needs_animal = pytest.mark.skipif(not _have_animal(), reason="pip install --no-deps animal-mnist")


# --- loaders -----------------------------------------------------------------------
# (index, label, pixel sum, pixel [14, 14]) looked up once in the real files
FASHION_TRAIN = [(0, 9, 76247, 217), (1, 0, 84598, 204), (7, 2, 115182, 229), (12345, 8, 97611, 193),
                 (59999, 5, 16684, 0)]
ANIMAL = [(0, 0, 48553, 255), (999, 0, 44348, 253), (1000, 1, 30654, 255), (5432, 5, 56693, 255),
          (9999, 9, 51452, 175)]


@needs_fashion
def test_fashion_mnist_known_items():
    x, y = load_fashion_mnist("train")
    assert x.shape == (60000, 28, 28) and y.shape == (60000,)
    for i, label, total, center in FASHION_TRAIN:
        assert (int(y[i]), int(x[i].astype(int).sum()), int(x[i, 14, 14])) == (label, total, center)
    xt, yt = load_fashion_mnist("test")
    assert len(xt) == 10000 and (int(yt[0]), int(yt[9999])) == (9, 5)


@needs_fashion
def test_idx_reader_rejects_wrong_offset_and_byte_order(tmp_path):
    raw = gzip.open(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz").read()
    shifted = tmp_path / "shifted.idx"
    shifted.write_bytes(raw[:8] + b"\x00" + raw[8:])  # one byte off
    with pytest.raises(DataMissingError, match="shifted.idx"):
        read_idx(shifted)
    little = tmp_path / "little.idx"
    little.write_bytes(raw[:4] + raw[4:8][::-1] + raw[8:])  # size in the wrong byte order
    with pytest.raises(DataMissingError, match="little.idx"):
        read_idx(little)
    # a reader that skipped 8 header bytes too few would read other labels
    assert list(np.frombuffer(raw, np.uint8, offset=0)[:5]) != [9, 0, 0, 3, 0]
    assert list(read_idx(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz")[:5]) == [9, 0, 0, 3, 0]


@needs_animal
def test_animal_mnist_known_items(tmp_path):
    x, y = load_animal_mnist()
    assert x.shape == (10000, 28, 28) and np.bincount(y).tolist() == [1000] * 10
    for i, label, total, center in ANIMAL:
        assert (int(y[i]), int(x[i].astype(int).sum()), int(x[i, 14, 14])) == (label, total, center)
    # the unpickler admits numpy arrays only
    evil = tmp_path / "animal_data_version_3.gz"
    with gzip.open(evil, "wb") as f:
        pickle.dump(os.getcwd, f)
    with gzip.open(tmp_path / "animal_label_version_3.gz", "wb") as f:
        pickle.dump(np.zeros(3), f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_animal_mnist(tmp_path)


def test_missing_packages_name_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(DataMissingError, match="dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "animal_mnist" else real(n, *a))
    with pytest.raises(DataMissingError, match="pip install --no-deps animal-mnist"):
        load_animal_mnist()
    task = get_task("fashion-animal20", scale="ci", cache_dir=tmp_path)
    with pytest.raises(DataMissingError, match="animal-mnist|dataset-fashion-mnist"):
        task.item_contributor
    assert "animal-mnist" in task.data_missing() or "dataset-fashion-mnist" in task.data_missing()
    assert get_task("digits10", cache_dir=tmp_path).data_missing() is None


@needs_fashion
@needs_animal
def test_fashion_animal20_dataset_and_players(tmp_path):
    task = get_task("fashion-animal20", scale="ci", cache_dir=tmp_path)
    assert task.n_players == 20 and task.players[0] == "fashion_t_shirt_top" and task.players[10] == "animal_bear"
    ds = task.dataset
    assert ds.images.shape == (2000, 1, 16, 16) and ds.images.dtype == np.float32
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    assert task.counts().tolist() == [100] * 20
    # items go class by class in file order: item 0 is Fashion-MNIST train item 1 (the
    # first T-shirt), item 1000 the first Animal-MNIST bear
    from surrogateshap.tasks.data.images import resize

    assert ds.labels[0] == 0 and ds.labels[999] == 9 and ds.labels[1000] == 10 and ds.labels[-1] == 19
    np.testing.assert_array_equal(ds.images[0], resize(load_fashion_mnist()[0][1][None, None], 16)[0])
    np.testing.assert_array_equal(ds.images[1000], resize(load_animal_mnist()[0][0][None, None], 16)[0])


def _write_cifar(path, fines, coarse=7):
    """A CIFAR-100 binary file: record r has fine label fines[r] and pixels R=r, G=r+1, B=r+2."""
    recs = []
    for r, fine in enumerate(fines):
        pix = np.concatenate([np.full(1024, (r + c) % 256, np.uint8) for c in range(3)])
        recs.append(np.concatenate([[coarse, fine], pix]).astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.concatenate(recs).tofile(path)


def test_cifar100_binary_layout_and_cifar20_players(tmp_path):
    fines = [3, 40, 64, 80, 99, 44, 55, 84, 40, 12]
    _write_cifar(tmp_path / "cifar-100-binary" / "train.bin", fines)
    x, coarse, fine = load_cifar100_binary(tmp_path / "cifar-100-binary" / "train.bin")
    assert fine.tolist() == fines and coarse.tolist() == [7] * 10
    assert x.shape == (10, 3, 32, 32) and x[4, :, 0, 0].tolist() == [4, 5, 6]  # channel-major planes
    ds = cifar20_dataset(tmp_path, size=32)
    names = [CIFAR20_NAMES[i] for i in ds.labels]
    assert names == ["lamp", "lamp", "lizard", "otter", "possum", "squirrel", "table"]
    assert dict(zip(CIFAR20_FINE, CIFAR20_NAMES))[43] == "lion" and CIFAR20_NAMES[8] == "pickup_truck"
    # first record of label 40 (record 1: pixel values 1, 2, 3) scaled to [-1, 1]
    np.testing.assert_allclose(ds.images[0, :, 5, 5], np.array([1, 2, 3]) / 255 * 2 - 1, atol=1e-6)
    task = get_task("cifar20", scale="ci", data_dir=str(tmp_path), per_class=None, size=32, cache_dir=tmp_path)
    assert task.players == CIFAR20_NAMES and task.counts().sum() == 7


def test_cifar_missing_and_truncated_files_are_named(tmp_path, monkeypatch):
    expected = tmp_path / "cifar-100-binary" / "train.bin"
    with pytest.raises(DataMissingError, match=str(expected)):
        cifar20_dataset(tmp_path)
    monkeypatch.setenv("SURROGATESHAP_DATA", str(tmp_path))
    with pytest.raises(DataMissingError, match=str(expected)):
        get_task("cifar20", cache_dir=tmp_path).item_contributor
    _write_cifar(expected, [40, 41])
    with open(expected, "ab") as f:
        f.write(b"\x01" * 100)  # a cut-off third record
    with pytest.raises(DataMissingError, match=f"{expected}.*truncated"):
        load_cifar100_binary(expected)
    monkeypatch.delenv("SURROGATESHAP_DATA")
    with pytest.raises(DataMissingError, match="SURROGATESHAP_DATA"):
        cifar20_dataset(None)


def test_cifar20_paper_preset():
    from surrogateshap.tasks.catalog.cifar20 import Cifar20Config

    with pytest.raises(ValueError, match="pt_inception-2015-12-05"):
        Cifar20Config.preset("paper")
    cfg = Cifar20Config.preset("paper", inception_weights="/w/pt_inception-2015-12-05-6726825d.pth")
    assert (cfg.size, cfg.family, cfg.p_uncond, cfg.guidance, cfg.n_samples) == (32, "unet", 0.1, 1.4, 10240)
    # where the data and the weights lie does not change the config id
    a = get_task("cifar20", scale="paper", inception_weights="/a/w.pth")
    b = get_task("cifar20", scale="paper", inception_weights="/b/w.pth", data_dir="/x")
    assert a.config_id() == b.config_id()
    # the paper's 32x32 UNet builds from the config (no download) and maps shape to shape
    from surrogateshap.tasks.models.unet import CFGUNet, UNetFamily

    assert cfg.family == "unet"
    fam = UNetFamily(shape=(3, 32, 32), n_labels=20, **{f: getattr(cfg, f) for f in UNetFamily.OWN})
    net = CFGUNet(fam.unet_config())
    out = net(torch.zeros(2, 3, 32, 32), torch.tensor([0, 999]), torch.tensor([3, 20]))
    assert out.shape == (2, 3, 32, 32) and net.unet.class_embedding.num_embeddings == 21


@pytest.mark.gpu
def test_inception_featurizer_with_real_weights():
    """Needs torch-fidelity and $SURROGATESHAP_INCEPTION = the FID Inception weights file."""
    from surrogateshap.tasks.features.nets import InceptionFeaturizer

    path = os.environ.get("SURROGATESHAP_INCEPTION")
    if not path:
        pytest.skip("set SURROGATESHAP_INCEPTION to pt_inception-2015-12-05-6726825d.pth")
    f, logits = InceptionFeaturizer(path).features(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert f.shape == (4, 2048) and logits.shape == (4, 1008)


# --- the diffusers UNet family -----------------------------------------------------
def _tiny_unet(n_labels=3):
    from surrogateshap.tasks.models.unet import UNetConfig

    return UNetConfig(shape=(1, 8, 8), n_labels=n_labels, channels=(8, 16), T=100)


def _toy_data(n=24, n_labels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    y = torch.arange(n) % n_labels
    return x, y


def test_unet_trains_and_samples_with_own_null_label():
    from surrogateshap.tasks.models.unet import sample_unets, train_unets

    torch.set_num_threads(1)
    x, y = _toy_data()
    models = train_unets(x, y, [np.arange(24)], _tiny_unet(), steps=3, batch_size=8, lr=1e-3, seeds=[0])
    m = models[0]
    assert m.unet.class_embedding.num_embeddings == 4 and m.null_label == 3
    imgs = sample_unets(models, np.array([[0, 1, 2, 0]]), steps=3, guidance=1.4, seed=5)
    assert imgs.shape == (1, 4, 1, 8, 8) and torch.isfinite(imgs).all() and imgs.abs().max() <= 1
    again = sample_unets(models, np.array([[0, 1, 2, 0]]), steps=3, guidance=1.4, seed=5)
    assert torch.equal(imgs, again)
    other = sample_unets(models, np.array([[0, 1, 2, 0]]), steps=3, guidance=0.0, seed=5)
    assert not torch.equal(imgs, other)  # guidance is applied


def test_unet_training_never_sees_other_coalitions_data():
    from surrogateshap.tasks.models.unet import train_unets

    x, y = _toy_data()
    member = np.flatnonzero(y.numpy() != 1)
    poisoned = x.clone()
    poisoned[y == 1] = float("nan")
    models = train_unets(poisoned, y, [member], _tiny_unet(), steps=4, batch_size=8, lr=1e-3, seeds=[0])
    assert all(torch.isfinite(p).all() for p in models[0].parameters())
    # the poison would be caught: training on every item makes the weights NaN
    bad = train_unets(poisoned, y, [np.arange(24)], _tiny_unet(), steps=4, batch_size=8, lr=1e-3, seeds=[0])
    assert not all(torch.isfinite(p).all() for p in bad[0].parameters())


def test_unet_model_does_not_depend_on_its_batch():
    from surrogateshap.tasks.models.unet import train_unets

    x, y = _toy_data()
    a, b = np.flatnonzero(y.numpy() == 0), np.flatnonzero(y.numpy() != 0)
    two = train_unets(x, y, [a, b], _tiny_unet(), steps=3, batch_size=8, lr=1e-3, seeds=[11, 22])
    one = train_unets(x, y, [b], _tiny_unet(), steps=3, batch_size=8, lr=1e-3, seeds=[22])
    for p, q in zip(two[1].parameters(), one[0].parameters()):
        assert torch.equal(p, q)
    other = train_unets(x, y, [b], _tiny_unet(), steps=3, batch_size=8, lr=1e-3, seeds=[23])
    assert not all(torch.equal(p, q) for p, q in zip(other[0].parameters(), one[0].parameters()))


def test_per_example_denoising_loss():
    from surrogateshap.tasks.models.unet import CFGUNet, denoising_loss

    torch.manual_seed(0)
    model = CFGUNet(_tiny_unet()).eval()
    x, y = _toy_data(6)
    t = torch.tensor([0, 10, 50, 99, 3, 70])
    noise = torch.randn(6, 1, 8, 8)
    loss = denoising_loss(model, x, y, t, noise)
    assert loss.shape == (6,)
    ab = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    manual = ((model(ab.sqrt() * x + (1 - ab).sqrt() * noise, t, y) - noise) ** 2).mean((1, 2, 3))
    torch.testing.assert_close(loss, manual)
    # example 2's loss is its own: the same alone as in the batch
    torch.testing.assert_close(denoising_loss(model, x[2:3], y[2:3], t[2:3], noise[2:3]), loss[2:3],
                               rtol=1e-4, atol=1e-6)
    # the null label is a different condition
    null = torch.full_like(y, model.null_label)
    assert not torch.allclose(denoising_loss(model, x, null, t, noise), loss)


# --- tasks on the UNet family and the statistics -----------------------------------
@needs_fashion
@needs_animal
def test_unet_family_task_retrains_and_caches_full_model(tmp_path):
    torch.set_num_threads(1)
    kw = dict(family="unet", channels=(8, 16), steps=3, batch_size=8, n_samples=20, bank_per_label=4,
              sample_steps=2, per_class=20, n_modes=5)
    task = get_task("fashion-animal20", scale="ci", cache_dir=tmp_path, **kw)
    assert task.family.name == "unet"
    masks = np.zeros((2, 20), bool)
    masks[0, [0, 12]] = True
    masks[1, 5] = True
    stats = task.retrain_stats(masks, seed=0)
    for s in stats:
        assert all(np.isfinite(v) for v in task.score(s).values())
    again = task.retrain_stats(masks[[1]], seed=0)  # alone: the same model and samples
    assert task.score(again[0]) == task.score(stats[1])
    banks = task.bank_stats()
    fresh = get_task("fashion-animal20", scale="ci", cache_dir=tmp_path, **kw)  # reloads full_model.pt
    assert (tmp_path / task.config_id() / "full_model.pt").exists()
    np.testing.assert_array_equal(fresh.bank_stats()[3].mean, banks[3].mean)


@needs_fashion
@needs_animal
def test_fashion_animal20_statistics_equal_torchmetrics(tmp_path):
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    from surrogateshap.tasks.features.statistics import mix_stats, utility_from_stats

    task = get_task("fashion-animal20", scale="ci", cache_dir=tmp_path)
    assert task.feature_net.body[0].in_features == 256  # the shipped 16x16 network
    x = torch.as_tensor(task.dataset.images)
    rng = np.random.default_rng(0)
    sizes = (60, 30, 90)
    banks = [(x[rng.choice(len(x), size=n)] + 0.1 * torch.randn(n, 1, 16, 16)).clamp(-1, 1) for n in sizes]
    mixed = mix_stats([task.stats_of(b) for b in banks], np.array(sizes) / sum(sizes))
    real = task.real_stats()
    fid = FrechetInceptionDistance(feature=task.feature_net, normalize=False)
    fid.update(x, real=True)
    fid.update(torch.cat(banks), real=False)
    assert -utility_from_stats("neg_fid", mixed, real) == pytest.approx(float(fid.compute()), rel=1e-3)
    net = task.feature_net
    net.logits = True
    try:
        is_ = InceptionScore(feature=net, splits=1, normalize=False)
        is_.update(torch.cat(banks))
        ref = float(is_.compute()[0])
    finally:
        net.logits = False
    assert utility_from_stats("inception_score", mixed, real) == pytest.approx(ref, rel=1e-4)
    assert utility_from_stats("coverage", mixed, real) == pytest.approx(
        utility_from_stats("coverage", task.stats_of(torch.cat(banks)), real), abs=1e-9)


# --- ground truth: the coalition table ---------------------------------------------
def test_lds_sets_are_the_documented_draws():
    from surrogateshap.metrics import sample_test_coalitions
    from surrogateshap.benchmark.protocol import LDS_SETS, ground_truth_coalitions, lds_test_coalitions

    sets = lds_test_coalitions(20)
    assert {a: len(m) for a, m in sets.items()} == {0.5: 100, 0.25: 50, 0.75: 50}
    for a, masks in sets.items():
        assert (masks.sum(1) == int(a * 20)).all()
        m, seed = LDS_SETS[a]
        np.testing.assert_array_equal(masks, sample_test_coalitions(20, a, m, seed))
    allm = ground_truth_coalitions(20)
    assert not allm[0].any() and allm[1].all() and len(np.unique(allm, axis=0)) == len(allm)
    assert len(allm) == 2 + 200 + 20  # distinct draws, plus leave-one-out


def test_coalition_table_exports_resumes_and_refuses_other_configs(tmp_path):
    from test_tasks import _FakeTask

    from surrogateshap.tasks.reference import build_table, load_reference

    masks = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 1]], bool)
    crashing = _FakeTask(tmp_path / "cache", fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        build_table(crashing, masks, [0, 1], tmp_path / "ref", export_every=2, progress=False)
    # the empty coalition (nothing to train) and the first chunk (2 coalitions to train:
    # full and 1010, both seeds) were exported before the crash
    part = load_reference(crashing, tmp_path / "ref" / "retraining_table.csv")
    assert len(part.frame) == 6 and set(part.frame["seed"]) == {0, 1}
    text = (tmp_path / "ref" / "retraining_table.csv").read_text()
    assert "shipped on purpose" in text and f"# config {crashing.config_id()}:" in text

    fresh = _FakeTask(tmp_path / "other-cache")  # no cache: resumes from the table
    table = build_table(fresh, masks, [0, 1], tmp_path / "ref", export_every=2, progress=False,
                                  command="make-it", note="five coalitions")
    assert len(fresh.trained) == 2 * 2  # only the 2 coalitions not yet exported
    assert len(table.frame) == 10
    v = table.values(masks[2:3], "neg_fid", seed=1)
    assert v[0] == pytest.approx(-(1 + 3) ** 2, abs=1e-6)
    text = (tmp_path / "ref" / "retraining_table.csv").read_text()
    assert "# produced by: make-it" in text and "# five coalitions" in text
    keys = set(zip(table.frame["coalition"], table.frame["seed"]))
    assert (coalition_key(masks[4]), 0) in keys

    other = _FakeTask(tmp_path / "cache")
    other.name = "fake4-other"
    with pytest.raises(ValueError, match="another configuration"):
        build_table(other, masks, [0], tmp_path / "ref", progress=False)


def test_a_mostly_built_table_trains_what_it_lacks_in_full_chunks(tmp_path):
    """A chunk between two writes holds ``export_every`` coalitions to *train*: on a table
    that holds every other coalition, the lacking ones train together, not one per chunk
    (which left all but one worker idle)."""
    from test_tasks import _FakeTask

    from surrogateshap.tasks.reference import build_table

    masks = np.array([[int(c) for c in f"{i:04b}"] for i in range(16)], bool)
    first = _FakeTask(tmp_path / "cache-a")
    build_table(first, masks[::2], [0], tmp_path / "ref", export_every=8, progress=False)
    calls = []
    task = _FakeTask(tmp_path / "cache-b")  # no cache: the table serves the even rows
    original = task.retrain_stats
    task.retrain_stats = lambda ms, seed: (calls.append(len(ms)), original(ms, seed))[1]
    table = build_table(task, masks, [0], tmp_path / "ref", export_every=2, progress=False)
    assert sorted(task.trained) == sorted(coalition_key(m) for m in masks[1::2])
    # chunks of 2 lacking coalitions: full jobs of models_per_batch = 2 (before: 8 jobs of 1)
    assert task.config.models_per_batch == 2 and calls == [2, 2, 2, 2]
    assert len(table.frame) == 16


def test_a_new_folder_extends_the_shipped_table(tmp_path, monkeypatch):
    """``build_table`` into a folder without a table serves the shipped table's rows (no
    retraining) and keeps them, so the new table extends the shipped one."""
    from test_tasks import _FakeTask

    from surrogateshap.tasks.reference import RETRAINING_CSV, build_table

    monkeypatch.setenv("SURROGATESHAP_DATASETS", str(tmp_path / "datasets"))
    masks = np.array([[int(c) for c in f"{i:04b}"] for i in range(16)], bool)
    build_table(_FakeTask(tmp_path / "cache-a"), masks[:6], [0], progress=False)  # the shipped table
    assert (tmp_path / "datasets" / "fake4" / RETRAINING_CSV).exists()
    task = _FakeTask(tmp_path / "cache-b")  # a fresh cache
    table = build_table(task, masks[4:10], [0], tmp_path / "out", progress=False)
    assert sorted(task.trained) == sorted(coalition_key(m) for m in masks[6:10])
    assert sorted(table.frame["coalition"]) == sorted(coalition_key(m) for m in masks[:10])


def test_lds_ground_truth_of_a_partial_table():
    import pandas as pd

    from surrogateshap.table import CoalitionTable
    from surrogateshap.benchmark.protocol import lds_ground_truth, lds_test_coalitions

    test = lds_test_coalitions(20)[0.5]
    rows = [{"coalition": coalition_key(m), "seed": s, "u": float(m @ np.arange(20)) + s}
            for s in (0, 1) for m in test[: 10 if s else 7]]
    table = CoalitionTable(pd.DataFrame(rows), [f"p{i}" for i in range(20)], ["u"])
    masks, values = lds_ground_truth(table, "u", 0.5)
    np.testing.assert_array_equal(masks, test[:7])  # held by both seeds, in draw order
    np.testing.assert_allclose(values, np.stack([test[:7] @ np.arange(20) + s for s in (0, 1)]))
    with pytest.raises(ValueError, match="none of the alpha = 0.25"):
        lds_ground_truth(table, "u", 0.25)


@needs_fashion
@needs_animal
def test_the_proxy_is_the_same_at_one_and_two_threads(tmp_path):
    # SurrogateSHAP's published figures rest on the full model and its sample bank, trained
    # on the user's machine from an empty cache: they must not depend on its thread count
    threads = torch.get_num_threads()
    values = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            task = get_task("fashion-animal20", scale="ci", cache_dir=tmp_path / f"t{n}")
            masks = np.random.default_rng(0).random((4, task.n_players)) < 0.5
            values.append(([task.proxy_game(u)(masks) for u in task.utilities], task.full_model.state_dict()))
    finally:
        torch.set_num_threads(threads)
    (v1, s1), (v2, s2) = values
    for a, b in zip(v1, v2):
        np.testing.assert_array_equal(a, b)
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
