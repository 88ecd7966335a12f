"""Model-based baselines: the TRAK kernel against closed forms, contributor aggregation
under shuffling, order-free similarity, the fine-tuning game's cache, and the mechanics
of every model-based estimator on a tiny digits10 model."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from baselines.trak import Projector, evenly_spaced_timesteps, gradient_features, kernel_scores  # noqa: E402
from surrogateshap import get_estimator  # noqa: E402
from surrogateshap.game import FunctionGame, coalition_key  # noqa: E402
from surrogateshap.model_access import DenoiserAccess, Generated, aggregate_to_contributors  # noqa: E402

#: the random projectors come from dattri (the "attribution" extra)
needs_dattri = pytest.mark.skipif(importlib.util.find_spec("dattri") is None,
                                  reason="dattri not installed (pip install -e '.[attribution]')")

# ----------------------------------------------------------------- a linear toy family


class LinearAccess(DenoiserAccess):
    """eps_W(x_t) = x_t W^T: a linear denoiser, so the squared loss is quadratic in W and
    every per-example gradient has a closed form."""

    def __init__(self, x, y, contributors, n_players, W, gen, shuffle=False, T=50):
        self.x, self.y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y)
        self.item_contributor = np.asarray(contributors)
        self.players = tuple(f"c{i}" for i in range(n_players))
        self.module = torch.nn.Linear(W.shape[1], W.shape[0], bias=False).double()
        with torch.no_grad():
            self.module.weight.copy_(torch.as_tensor(W))
        self.gen = torch.as_tensor(gen, dtype=torch.float64)
        self.shuffle = shuffle
        self._ab = torch.linspace(0.95, 0.05, T, dtype=torch.float64)
        self.F = torch.as_tensor(np.random.default_rng(9).normal(size=(x.shape[1], 4)))

    @property
    def alphas_cumprod(self):
        return self._ab

    def denoise(self, params, x_t, cond, t):
        return x_t @ params["weight"].T

    def item_batches(self, batch_size):
        ds = torch.utils.data.TensorDataset(torch.arange(len(self.x)), self.x, self.y)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=self.shuffle,
                                             generator=torch.Generator().manual_seed(3))
        for idx, xb, yb in loader:
            yield idx.numpy(), xb, yb

    def generate(self, n, seed, path=False):
        imgs = self.gen[:n]
        cond = torch.zeros(len(imgs), dtype=torch.long)
        steps = []
        if path:
            for t in (40, 20, 5):
                a = self._ab[t]
                steps.append((t, a.sqrt() * imgs + (1 - a).sqrt() * torch.ones_like(imgs)))
        return Generated(imgs, cond, steps)

    def features(self, images):
        return (torch.as_tensor(images, dtype=torch.float64) @ self.F).numpy()


def _toy(n=24, dim=3, n_players=4, n_gen=6, seed=0, shuffle=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    contributors = np.arange(n) % n_players
    rng.shuffle(contributors)
    W = rng.normal(size=(dim, dim)) * 0.5
    gen = rng.normal(size=(n_gen, dim))
    return LinearAccess(x, np.zeros(n, int), contributors, n_players, W, gen, shuffle=shuffle)


def _analytic_loss_grad(access, x0, W, ts, noise):
    """d/dW of mean_t mean_dims (W x_t - n_t)^2 with x_t = sqrt(ab) x0 + sqrt(1-ab) n_t."""
    ab = access.alphas_cumprod.numpy()
    g = np.zeros_like(W)
    for t, nz in zip(ts, noise):
        xt = np.sqrt(ab[t]) * x0 + np.sqrt(1 - ab[t]) * nz
        g += 2.0 / len(x0) * np.outer(W @ xt - nz, xt)
    return (g / len(ts)).reshape(-1)


def _game(access):
    return FunctionGame(lambda m: m.sum(1).astype(float), access.players)


# ----------------------------------------------------------------- closed forms


def test_kernel_scores_equal_ridge_leave_one_out_influence():
    """For ridge regression the TRAK kernel x_test^T (X^T X + lambda I)^-1 x_i, times the
    residual over (1 - leverage), is exactly the change in the test prediction when item
    i is removed and the model refitted."""
    rng = np.random.default_rng(1)
    n, p, lam = 40, 5, 0.7
    X, Xt = rng.normal(size=(n, p)), rng.normal(size=(7, p))
    y = X @ rng.normal(size=p) + 0.3 * rng.normal(size=n)
    A = X.T @ X + lam * np.eye(p)
    theta = np.linalg.solve(A, X.T @ y)
    r = y - X @ theta
    h = np.einsum("ij,ji->i", X, np.linalg.solve(A, X.T))
    loo = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        th = np.linalg.solve(X[keep].T @ X[keep] + lam * np.eye(p), X[keep].T @ y[keep])
        loo[i] = (Xt @ (theta - th)).mean()
    s = kernel_scores(X, Xt, "trak", "mean", damping=lam, block=8)  # blocks smaller than n, m
    np.testing.assert_allclose(s * r / (1 - h), loo, rtol=1e-9, atol=1e-12)
    # a kernel without the inverse (plain gradient dot products) is not the influence
    wrong = (X @ Xt.T).mean(1)
    assert not np.allclose(wrong * r / (1 - h), loo, rtol=1e-2)


def test_kernel_score_variants_closed_form():
    rng = np.random.default_rng(2)
    Phi, G, lam = rng.normal(size=(30, 4)), rng.normal(size=(9, 4)), 0.3
    A = Phi.T @ Phi + lam * np.eye(4)
    S = Phi @ np.linalg.solve(A, G.T)
    np.testing.assert_allclose(kernel_scores(Phi, G, "trak", "max", lam, block=4), S.max(1), rtol=1e-10)
    norm = np.linalg.norm(Phi, axis=1)
    np.testing.assert_allclose(kernel_scores(Phi, G, "renormalized", "mean", lam), S.mean(1) / norm,
                               rtol=1e-10)
    rel = np.linalg.norm(np.linalg.solve(A, Phi.T).T, axis=1)
    np.testing.assert_allclose(kernel_scores(Phi, G, "relative", "mean", lam), S.mean(1) / rel, rtol=1e-10)
    cos = (Phi / norm[:, None]) @ (G / np.linalg.norm(G, axis=1)[:, None]).T
    np.testing.assert_allclose(kernel_scores(Phi, G, "cosine", "max", 0.0, block=5), cos.max(1), rtol=1e-10)


def test_per_example_gradients_match_closed_form():
    acc = _toy()
    W = acc.module.weight.detach().numpy()
    ts = evenly_spaced_timesteps(acc.T, 3)
    proj = Projector("identity", W.size, W.size)
    idx, Phi, n_grad = gradient_features(acc, "loss", acc.item_batches(5), ts, proj, seed=11)
    from baselines.trak import _item_noise

    want = np.stack([_analytic_loss_grad(acc, acc.x[i].numpy(), W, ts,
                                         _item_noise(11, i, (3, W.shape[0])).double().numpy())
                     for i in idx])
    np.testing.assert_allclose(Phi, want, rtol=1e-8, atol=1e-12)
    assert n_grad == len(acc.x) * 3


@pytest.mark.parametrize("projector", ["identity", "orthogonal"])
def test_trak_estimator_equals_closed_form_influence(projector):
    """End to end on the linear denoiser: TRAK's item scores are the closed-form kernel
    influence of the analytic loss gradients, with no projection or an orthogonal one
    (d >= p, where the kernel is unchanged)."""
    acc = _toy()
    W = acc.module.weight.detach().numpy()
    est = get_estimator("trak", n_timesteps=3, proj_dim=12, damping=0.05, damping_relative=False,
                        n_samples=6, projector=projector, batch_size=7, aggregate="sum")
    att = est.estimate(_game(acc), 0, seed=4, model=acc)
    from baselines.trak import _item_noise

    seeds, ts = att.extra["seeds"], att.extra["timesteps"]
    k, d = len(ts), W.shape[0]
    Phi = np.stack([_analytic_loss_grad(acc, acc.x[i].numpy(), W, ts,
                                        _item_noise(seeds["train_noise"], i, (k, d)).double().numpy())
                    for i in range(len(acc.x))])
    G = np.stack([_analytic_loss_grad(acc, acc.gen[j].numpy(), W, ts,
                                      _item_noise(seeds["target_noise"], j, (k, d)).double().numpy())
                  for j in range(len(acc.gen))])
    infl = (Phi @ np.linalg.solve(Phi.T @ Phi + 0.05 * np.eye(W.size), G.T)).mean(1)
    np.testing.assert_allclose(att.extra["item_scores"], infl, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(att.values, np.bincount(acc.item_contributor, infl, minlength=4),
                               rtol=1e-6, atol=1e-10)
    # dropping the kernel inverse gives something else: the check can fail
    assert not np.allclose(att.extra["item_scores"], (Phi @ G.T).mean(1), rtol=1e-2)


def test_orthogonal_projector_needs_enough_dimensions():
    with pytest.raises(ValueError, match="proj_dim >= 9"):
        Projector("orthogonal", 9, 4)


# ----------------------------------------------------------------- aggregation and order


def test_aggregate_sum_and_mean():
    s = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    c = np.array([0, 2, 0, 2, 2])
    np.testing.assert_allclose(aggregate_to_contributors(s, c, 3, "sum"), [4.0, 0.0, 11.0])
    np.testing.assert_allclose(aggregate_to_contributors(s, c, 3, "mean"), [2.0, 0.0, 11.0 / 3])
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_to_contributors(s, c, 3, "max")
    with pytest.raises(ValueError, match="5 item scores for 4"):
        aggregate_to_contributors(s, c[:4], 3)


def test_aggregation_same_for_shuffled_and_unshuffled_loader():
    """Rows of a shuffled loader are placed by the indices it yields. Reading them in
    dataset order (the public bug) scrambles contributors, and the check catches it."""
    rng = np.random.default_rng(0)
    n, n_players = 60, 5
    data = torch.as_tensor(rng.normal(size=(n, 3)))
    contributors = rng.integers(0, n_players, size=n)
    ds = torch.utils.data.TensorDataset(torch.arange(n), data)

    def run(shuffle, place_by_index=True):
        loader = torch.utils.data.DataLoader(ds, batch_size=7, shuffle=shuffle,
                                             generator=torch.Generator().manual_seed(1))
        idx, scores = [], []
        for i, xb in loader:
            idx.append(i.numpy())
            scores.append(xb.sum(1).numpy() ** 2)  # any per-item score
        idx, scores = np.concatenate(idx), np.concatenate(scores)
        rows = contributors[idx] if place_by_index else contributors
        return {how: aggregate_to_contributors(scores, rows, n_players, how) for how in ("sum", "mean")}

    plain, shuffled = run(False), run(True)
    for how in ("sum", "mean"):
        np.testing.assert_allclose(shuffled[how], plain[how], rtol=1e-12)
    assert not np.allclose(run(True, place_by_index=False)["sum"], plain["sum"])


@pytest.mark.parametrize("name,params", [pytest.param("trak", {}, marks=needs_dattri),
                                         pytest.param("journey-trak", {}, marks=needs_dattri),
                                         ("similarity", {"space": "feature"})])
def test_estimators_same_for_shuffled_loader(name, params):
    kw = {} if name == "similarity" else dict(n_timesteps=2, proj_dim=5, projector="normal",
                                              batch_size=5)
    vals = []
    for shuffle in (False, True):
        acc = _toy(shuffle=shuffle)
        att = get_estimator(name, n_samples=6, **kw, **params).estimate(_game(acc), 0, seed=2, model=acc)
        vals.append((att.values, att.extra["item_scores"]))
    np.testing.assert_allclose(vals[1][0], vals[0][0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(vals[1][1], vals[0][1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("space", ["pixel", "feature"])
@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_similarity_does_not_depend_on_training_order(space, reduce):
    """Permuting the dataset (items and their contributors together) permutes the item
    scores and leaves every contributor's value unchanged."""
    acc = _toy(n=30)
    perm = np.random.default_rng(5).permutation(30)
    moved = LinearAccess(acc.x.numpy()[perm], acc.y.numpy()[perm], acc.item_contributor[perm], 4,
                         acc.module.weight.detach().numpy(), acc.gen.numpy())
    est = get_estimator("similarity", space=space, reduce=reduce, n_samples=6, batch_size=4)
    a = est.estimate(_game(acc), 0, seed=0, model=acc)
    b = est.estimate(_game(moved), 0, seed=0, model=moved)
    np.testing.assert_allclose(b.values, a.values, rtol=1e-10)
    np.testing.assert_allclose(b.extra["item_scores"], a.extra["item_scores"][perm], rtol=1e-10)
    # the values are the closed form: mean/max cosine, summed per contributor
    X = acc.x.numpy() if space == "pixel" else acc.features(acc.x)
    Y = acc.gen.numpy() if space == "pixel" else acc.features(acc.gen)
    cos = (X / np.linalg.norm(X, axis=1)[:, None]) @ (Y / np.linalg.norm(Y, axis=1)[:, None]).T
    item = cos.mean(1) if reduce == "mean" else cos.max(1)
    np.testing.assert_allclose(a.values, np.bincount(acc.item_contributor, item, minlength=4), rtol=1e-10)


def test_model_access_errors_are_clear():
    acc = _toy()
    with pytest.raises(TypeError, match="requires \\['model'\\]"):
        get_estimator("trak").estimate(_game(acc), 0, seed=0)
    with pytest.raises(TypeError, match="ModelAccess"):
        get_estimator("trak").estimate(_game(acc), 0, seed=0, model=object())
    other = FunctionGame(lambda m: m.sum(1).astype(float), ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="differ from the game's players"):
        get_estimator("similarity").estimate(other, 0, seed=0, model=acc)
    with pytest.raises(ValueError, match="score must be one of"):
        get_estimator("trak", score="nope").estimate(_game(acc), 0, seed=0, model=acc)


# ----------------------------------------------------------------- digits10, tiny


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    from surrogateshap.tasks.catalog.digits10 import Digits10Config, Digits10Task

    cfg = Digits10Config.preset("ci", hidden=32, blocks=1, steps=30, n_samples=40, bank_per_label=8,
                                n_modes=5, models_per_batch=4, device="cpu")
    return Digits10Task(cfg, cache_dir=tmp_path_factory.mktemp("cache"))


def test_magnitude_prune_and_sparse_finetuning(tiny_task):
    from surrogateshap.tasks.models.pruning import magnitude_prune

    state = {k: v.detach().clone() for k, v in tiny_task.full_model.state_dict().items()}
    pruned, keep = magnitude_prune(state, 0.5, "layer")
    for name, m in keep.items():
        assert abs(m.float().mean().item() - 0.5) < 0.02, name
        kept = state[name].abs()[m]
        assert kept.min() >= state[name].abs()[~m].max()  # smallest magnitudes went
    assert "label" not in keep and not any(k.endswith("bias") for k in keep)
    _, keep_g = magnitude_prune(state, 0.5, "global")
    total = sum(m.numel() for m in keep_g.values())
    assert abs(sum(m.sum().item() for m in keep_g.values()) / total - 0.5) < 0.01
    from surrogateshap.tasks.models.mlp import train_denoisers

    x, y = tiny_task.training_data
    model = train_denoisers(x, y, [np.arange(50), np.arange(100, 200)], tiny_task.family.denoiser_config(),
                            steps=3, batch_size=16, lr=1e-2, seeds=[1, 2], init=pruned, keep=keep)
    for name, p in model.named_parameters():
        if name in keep:
            assert (p.detach()[:, ~keep[name][0]] == 0).all(), name
            assert not torch.equal(p.detach()[0], pruned[name][0])  # it did train


def _store_lines(path):
    """({"header": ...}, [records]) of a store, read with SQLite itself."""
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        head = json.loads(db.execute("SELECT value FROM meta WHERE name='header'").fetchone()[0])
        cols = [c[1] for c in db.execute("PRAGMA table_info(records)")]
        rows = [dict(zip(cols, r)) for r in db.execute("SELECT * FROM records ORDER BY id")]
    finally:
        db.close()
    recs = [{"key": r["key"], **json.loads(r["record"])} if "record" in r else r for r in rows]
    return {"header": head}, recs


def test_finetuning_game_cache_layout_and_resume(tiny_task, monkeypatch):
    from surrogateshap.tasks import games
    from surrogateshap.tasks.games import FineTuningGame

    masks = np.array([[1] * 10, [1, 0] * 5, [0] * 10, [0, 1] * 5], bool)
    ft = FineTuningGame(tiny_task, "neg_fid", seed=3, sparsity=0.3, steps=4, progress=False)
    v = ft(masks)
    assert ft.n_trained == 3 and np.isfinite(v).all()
    assert ft.cost_of(masks) == 3 * 4 and ft.cost_unit == "training steps"
    rt = games.RetrainingGame(tiny_task, "neg_fid", seed=3, progress=False)
    rt(masks[:2])
    # same folder, same store layout: a header, then one record per coalition
    assert ft.store.path.parent == rt.store.path.parent == tiny_task.cache_dir / tiny_task.config_id()
    fh, frecs = _store_lines(ft.store.path)
    rh, rrecs = _store_lines(rt.store.path)
    assert set(fh) == set(rh) == {"header"}
    assert fh["header"]["task"] == rh["header"]["task"] == tiny_task.config_id()
    assert fh["header"]["seed"] == 3
    assert {fh["header"][k] for k in ("sparsity", "steps", "scope")} == {0.3, 4, "layer"}
    assert {r["key"] for r in frecs} == {coalition_key(m) for m in masks if m.any()}
    assert set(frecs[0]) - {"steps"} == set(rrecs[0]) - {"trainings"}  # key, utilities, seconds
    # a second game on the same cache (fresh store objects, as in a new process) trains nothing
    from surrogateshap.tasks.cache import TaskCache

    monkeypatch.setitem(tiny_task.__dict__, "cache", TaskCache(tiny_task))
    again = FineTuningGame(tiny_task, "inception_score", seed=3, sparsity=0.3, steps=4, progress=False)
    again2 = FineTuningGame(tiny_task, "neg_fid", seed=3, sparsity=0.3, steps=4, progress=False)
    np.testing.assert_array_equal(again2(masks), v)
    assert np.isfinite(again(masks)).all()
    assert again.n_trained == again2.n_trained == 0
    # other pruning settings are another game: another file
    other = FineTuningGame(tiny_task, "neg_fid", seed=3, sparsity=0.5, steps=4, progress=False)
    assert other.store.path != ft.store.path
    with pytest.raises(ValueError, match="sparsity"):
        FineTuningGame(tiny_task, "neg_fid", sparsity=1.0)


MODEL_BASED = [pytest.param(name, params, marks=needs_dattri) for name, params in (
    ("trak", {}), ("d-trak", {}), ("journey-trak", {}), ("influence", {}),
    ("influence", {"score": "relative"}), ("gradient-similarity", {}),
    ("gradient-similarity", {"reduce": "max"}))] + [
    ("similarity", {}), ("similarity", {"space": "feature", "reduce": "max"})]


@pytest.mark.parametrize("name,params", MODEL_BASED)
def test_model_based_estimators_run_on_digits10(tiny_task, name, params):
    items = np.flatnonzero(np.arange(len(tiny_task.item_contributor)) % 20 == 0)  # 90 items
    acc = tiny_task.model_access(items=items)
    kw = dict(n_samples=12, aggregate="mean")
    if name != "similarity":
        kw.update(n_timesteps=2, proj_dim=16, batch_size=32)
    att = get_estimator(name, **kw, **params).estimate(tiny_task.proxy_game("neg_fid"), 1, seed=0,
                                                       model=acc)
    assert att.values.shape == (10,) and np.isfinite(att.values).all()
    assert att.n_evaluations == 0
    costs = att.extra["costs"]
    assert costs["images_generated"] == 12 and costs["seconds"] > 0
    want_grads = 0 if name == "similarity" else (len(items) + 12) * 2
    assert costs["per_example_gradients"] == want_grads
    assert np.isfinite(att.extra["item_scores"]).all() and len(att.extra["item_scores"]) == len(items)


@needs_dattri
def test_shuffled_digits_loader_gives_same_trak_values(tiny_task):
    items = np.arange(0, 1797, 25)
    vals = [get_estimator("trak", n_timesteps=2, proj_dim=8, n_samples=6, batch_size=16)
            .estimate(tiny_task.proxy_game("neg_fid"), 0, seed=1,
                      model=tiny_task.model_access(items=items, shuffle=s)).values for s in (False, True)]
    np.testing.assert_allclose(vals[1], vals[0], rtol=1e-4, atol=1e-7)


def test_kernelshap_plays_the_finetuning_game(tiny_task):
    from surrogateshap.tasks.games import FineTuningGame

    game = FineTuningGame(tiny_task, "inception_score", seed=0, sparsity=0.5, steps=3, progress=False)
    att = get_estimator("kernelshap").estimate(game, 16, seed=0)
    assert np.isfinite(att.values).all()
    assert att.cost_unit == "training steps" and att.cost == 3 * game.n_trained > 0


def test_seam_imports_no_torch_and_estimators_no_task():
    import subprocess
    import sys

    code = ("import sys, surrogateshap.model_access; assert 'torch' not in sys.modules, 'torch'; "
            "import baselines.trak, baselines.similarity; "
            "assert not any(m.startswith('surrogateshap.tasks') for m in sys.modules), 'task'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_unet_family_model_access_runs_trak_and_keeps_dataset_order(tmp_path, monkeypatch):
    # the diffusers UNet family implements the same seam: per-example gradients through
    # functional_call on a UNet2DModel, scores placed by dataset index (shuffle-safe)
    pytest.importorskip("dattri")
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.data.images import DataMissingError

    monkeypatch.setenv("SURROGATESHAP_CACHE", str(tmp_path))
    try:
        task = get_task("fashion-animal20", scale="ci", family="unet", steps=5, channels=(8, 16),
                        n_samples=40, bank_per_label=4, per_class=4, cache_dir=tmp_path)
        task.dataset
    except DataMissingError as e:
        pytest.skip(str(e))
    game = task.proxy_game("neg_fid")
    est = get_estimator("trak", proj_dim=32, n_timesteps=2, n_samples=8, batch_size=16)
    a = est.estimate(game, 0, seed=0, model=task.model_access())
    b = est.estimate(game, 0, seed=0, model=task.model_access(shuffle=True))
    assert np.isfinite(a.values).all() and a.index == "datamodel"
    np.testing.assert_allclose(a.values, b.values, rtol=1e-4, atol=1e-6)
    assert a.cost == a.extra["costs"]["per_example_gradients"] > 0
    with pytest.raises(NotImplementedError, match="sampling paths"):
        get_estimator("journey-trak", proj_dim=32, n_timesteps=2, n_samples=8).estimate(
            game, 0, seed=0, model=task.model_access())
