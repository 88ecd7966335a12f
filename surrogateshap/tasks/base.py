"""A diffusion attribution task: one class, made of three parts.

A task knows its contributors (which training items each owns), the *units* its model
is conditioned on (a label, a (label, contributor) pair, a prompt; each item has one),
and its utilities. The work is done by three parts, each chosen by the configuration
from a registry, so an image task and a text-to-image task differ only in their parts:

- the **family** (:mod:`surrogateshap.tasks.models`: ``mlp``, ``unet``, ``sd``,
  ``flux``): trains one model per coalition, samples it, and says what a model that
  learned nothing generates (the empty coalition);
- the **scorer** (:mod:`surrogateshap.tasks.features`: ``net``, ``inception``, ``t2i``):
  turns samples into *statistics* (what a utility reads: sufficient statistics of
  image features, or per-image T2I features), scores them, and builds the proxy's
  *bank* (``mixture(unit_weights) -> statistics``);
- the **dataset** (:mod:`surrogateshap.tasks.data`): the items, their contributors and
  units.

From a task come its games (:mod:`surrogateshap.tasks.games`): the retraining game
v(S) = utility of a model trained on S's data, and SurrogateSHAP's proxy game
v_hat(S) = utility of the full model's per-unit bank mixed with S's unit weights
pi_S(u) (the share of S's items whose unit is u).

The empty coalition has no data and no model: both games define v(empty) = the utility
of the family's prior (noise for the image families, the base model for LoRA). It
shifts every Shapley value by the same amount, so it is defined once, here.
"""

from __future__ import annotations

import dataclasses
import os
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np

from surrogateshap.game import stable_hash
from surrogateshap.tasks.common import (
    RUN_FIELDS,
    allocate_counts,
    coalition_seed,
    default_cache_dir,
    resolve_device,
)

__all__ = ["DiffusionTask", "SellerView"]

class DiffusionTask:
    """A set of contributors to a conditional diffusion model.

    A task file (:mod:`surrogateshap.tasks.catalog`) sets ``name``, ``players``,
    ``utilities`` and ``config_cls`` (a frozen dataclass with ``preset(scale)``) and
    implements ``load_dataset()``; the config names the family (field ``family``, else
    ``family_name``) and the scorer (field ``featurizer``, else ``scorer_name``). A task
    may add per-sample scores its own utilities mix (``sample_scores``) and scoring
    networks of its own (``scoring_recipes``). Every step below can be overridden (a
    test task returns statistics directly).
    """

    name: str = ""
    players: tuple[str, ...] = ()
    utilities: tuple[str, ...] = ()
    cost_unit = "model trainings"
    config_cls = None
    family_name = "mlp"
    scorer_name = "net"
    #: shipped weights of the task's scoring networks, by recipe name (package data; a
    #: network without them is trained on first use and cached)
    shipped_nets: ClassVar[dict[str, Path]] = {}

    def __init__(self, config=None, cache_dir: str | os.PathLike | None = None, *, scale: str = "default",
                 **overrides):
        # a family or featurizer given as an object (not a config value) is a ready part
        self._parts = {k: overrides.pop(k) for k in ("family", "featurizer")
                       if overrides.get(k) is not None and not isinstance(overrides[k], str)}
        if config is None and self.config_cls is not None:
            config = self.config_cls.preset(scale, **overrides)
        elif overrides:
            raise TypeError("pass either a config or overrides of a preset, not both")
        self.config = config
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.validate()

    def validate(self) -> None:
        """Refuse a configuration that cannot work, before anything is trained."""
        if self.scorer_kind == "t2i":
            from surrogateshap.tasks.features.t2i import T2I_UTILITIES

            unknown = [u for u in self.utilities if u not in T2I_UTILITIES]
            if unknown:
                raise KeyError(f"{self.name}: unknown T2I utilities {unknown}; known: {sorted(T2I_UTILITIES)}")

    # --- data -----------------------------------------------------------------
    def load_dataset(self):
        raise NotImplementedError(f"{type(self).__name__} has no dataset")

    @property
    def _has_dataset(self) -> bool:
        return type(self).load_dataset is not DiffusionTask.load_dataset

    @cached_property
    def dataset(self):
        ds = self.load_dataset()
        if tuple(ds.players) != tuple(self.players):
            raise ValueError(f"{self.name}: the dataset's players {tuple(ds.players)[:5]}... are not the task's")
        return ds

    def missing_files(self) -> list[str]:
        """The local files the config needs and does not find, one line each (a paper
        config's ``missing_files()``; none otherwise)."""
        check = getattr(self.config, "missing_files", None)
        return list(check()) if check is not None else []

    def require_files(self) -> None:
        from surrogateshap.tasks.data.images import DataMissingError

        missing = self.missing_files()
        if missing:
            raise DataMissingError(f"{self.name}: " + "; ".join(missing))

    def data_missing(self) -> str | None:
        """None when the task's data and files are there, else the reason (naming the
        file and the package to install): what a benchmark prints when it skips."""
        from surrogateshap.tasks.data.images import DataMissingError

        try:
            if self._has_dataset:
                self.dataset
        except DataMissingError as e:
            return str(e)
        missing = self.missing_files()
        return f"{self.name}: " + "; ".join(missing) if missing else None

    @property
    def n_players(self) -> int:
        return len(self.players)

    @property
    def item_contributor(self) -> np.ndarray:
        """(n_items,) contributor index of each training item."""
        return np.asarray(self.dataset.item_contributor)

    @cached_property
    def units(self) -> tuple[str, ...]:
        """Names of the conditioning units (the sample banks); by default the players."""
        return tuple(self.dataset.unit_names) if self._has_dataset else self.players

    @cached_property
    def item_unit(self) -> np.ndarray:
        """(n_items,) unit index of each training item; by default its contributor."""
        return np.asarray(self.dataset.item_unit) if self._has_dataset else self.item_contributor

    @property
    def n_units(self) -> int:
        return len(self.units)

    def counts(self) -> np.ndarray:
        return np.bincount(self.item_contributor, minlength=self.n_players)

    def members(self, mask) -> np.ndarray:
        """Indices of the training items owned by coalition ``mask``."""
        mask = np.asarray(mask, dtype=bool)
        return np.flatnonzero(mask[self.item_contributor])

    def proportions(self, mask) -> np.ndarray:
        """pi_S: each contributor's share of the coalition's data (zeros outside S)."""
        mask = np.asarray(mask, dtype=bool)
        c = self.counts() * mask
        if c.sum() == 0:
            raise ValueError("the empty coalition has no data proportions")
        return c / c.sum()

    def unit_counts(self) -> np.ndarray:
        """(n_players, n_units) number of items of each contributor with each unit."""
        out = np.zeros((self.n_players, self.n_units), dtype=np.int64)
        np.add.at(out, (self.item_contributor, self.item_unit), 1)
        return out

    def unit_weights(self, masks) -> np.ndarray:
        """(m, n_units) mixture weights of coalitions ``masks`` (none empty): the share of
        each coalition's items with unit u. With unit = contributor this is pi_S."""
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        w = masks.astype(np.int64) @ self.unit_counts()
        total = w.sum(1, keepdims=True)
        if (total == 0).any():
            raise ValueError("the empty coalition has no data proportions")
        return w / total

    def unit_proportions(self, mask) -> np.ndarray:
        """pi_S over units for one coalition (what its samples are conditioned on)."""
        return self.unit_weights(np.asarray(mask, dtype=bool)[None])[0]

    def coalition_units(self, mask, n: int | None = None) -> np.ndarray:
        """The units of a coalition's ``n`` samples (default ``n_samples``), in proportion
        pi_S, grouped by unit."""
        counts = allocate_counts(self.config.n_samples if n is None else int(n), self.unit_proportions(mask))
        return np.repeat(np.arange(self.n_units), counts)

    # --- configuration --------------------------------------------------------
    def config_id(self) -> str:
        """The configuration's identity: every field but the run settings (where and how
        fast: fields marked by :func:`~surrogateshap.tasks.config.run_field`; a plain
        dataclass without them leaves out the fields named in ``RUN_FIELDS``)."""
        from surrogateshap.tasks.config import run_fields

        run = run_fields(self.config) or set(RUN_FIELDS)
        cfg = {k: v for k, v in dataclasses.asdict(self.config).items() if k not in run}
        return f"{self.name}-{stable_hash(cfg)}"

    @cached_property
    def device(self):
        return resolve_device(getattr(self.config, "device", "auto"))

    @cached_property
    def cache(self):
        """What the task keeps on disk (:class:`~surrogateshap.tasks.cache.TaskCache`)."""
        from surrogateshap.tasks.cache import TaskCache

        return TaskCache(self)

    # --- parts ----------------------------------------------------------------
    @property
    def family_kind(self) -> str:
        return getattr(self.config, "family", self.family_name)

    @property
    def scorer_kind(self) -> str:
        return getattr(self.config, "featurizer", self.scorer_name)

    @cached_property
    def family(self):
        from surrogateshap.tasks.models import make_family

        given = self._parts.get("family")
        return make_family(self.family_kind, self, **({"pipeline": given} if given is not None else {}))

    @cached_property
    def scorer(self):
        from surrogateshap.tasks.features import make_scorer

        given = self._parts.get("featurizer")
        return make_scorer(self.scorer_kind, self, **({"featurizer": given} if given is not None else {}))

    @property
    def featurizer(self):
        """The scorer's featurizer (images -> features)."""
        return self.scorer.featurizer

    @property
    def feature_net(self):
        """The featurizer's torch module (torchmetrics accepts it as ``feature``)."""
        return self.scorer.featurizer.net

    def features(self, images):
        """(features, logits) of images in [-1, 1], as float64 numpy arrays."""
        return self.scorer.features(images)

    # --- scoring networks -------------------------------------------------------
    def scoring_recipes(self) -> dict:
        """name -> :class:`~surrogateshap.tasks.features.nets.NetRecipe` of every network
        the project trains to score this task's samples (the featurizer's, and any a task
        adds for its own utilities)."""
        return self.scorer.recipes()

    def scoring_networks(self) -> dict:
        """name -> the loaded scoring networks (torch modules)."""
        return self.scorer.networks()

    def net_recipe(self, name: str, images, labels, n_classes: int):
        """A scoring network's recipe: its shipped weights (``shipped_nets[name]``) or a
        cache file keyed by the task, the name and the training images."""
        import hashlib

        from surrogateshap.tasks.features.nets import NetRecipe

        digest = hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest()[:12]
        return NetRecipe(name, images, labels, n_classes, shipped=self.shipped_nets.get(name),
                         cache=self.cache_dir / "featurenets" / f"{self.name}-{name}-{digest}.pt")

    def scoring_parts(self) -> dict[str, str]:
        """name -> weights hash of each network that scores samples (the project's own
        networks, or a local Inception file's digest); {} where the configuration names
        them all (the T2I tasks' paths)."""
        return self.scorer.parts() if self._has_dataset else {}

    def scoring_id(self) -> str:
        """Identity of the networks that score samples ("" when the configuration names
        them): a table's header and the retraining cache record it, so utilities scored by
        another network are never mixed."""
        if not hasattr(self, "_scoring_id"):
            parts = self.scoring_parts()
            self._scoring_id = stable_hash(parts) if parts else ""
        return self._scoring_id

    def sample_scores(self, images, feats, units) -> dict:
        """Per-sample scores (name -> (n,)) a task's own utilities mix; none here."""
        return {}

    # --- models ----------------------------------------------------------------
    @cached_property
    def training_data(self):
        """The training items in the family's layout, prepared once."""
        return self.family.prepare(self.dataset)

    def train(self, masks: np.ndarray, seed: int, progress: bool = False):
        """One model per coalition row, each seeded by (seed, coalition); ``progress``: a
        bar over the training steps where the family offers one (its ``train`` takes
        ``progress``; a family of your own need not)."""
        import inspect

        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        members = [self.members(m) for m in masks]
        for m, mem in zip(masks, members):
            if len(mem) == 0:
                raise ValueError(f"coalition {m.astype(int).tolist()} has no training data")
        bar = {"progress": True} if progress and "progress" in inspect.signature(self.family.train).parameters else {}
        return self.family.train(self.training_data, members, [coalition_seed(seed, m) for m in masks], **bar)

    def sample(self, models, labels: np.ndarray, seed=0):
        """Images (K, B, ...), row k of unit labels (K, B) from model k; ``seed`` is one
        int or one per model."""
        return self.family.sample(models, labels, seed=seed)

    #: whether this task object trained its full model (False: read from the cache)
    full_model_trained = False

    @cached_property
    def full_model(self):
        """The full-data model (seed 0), trained once and cached on disk."""
        path = self.cache.full_model_path(getattr(self.family, "model_file", "full_model.pt"))
        if path.exists():
            return self.family.load(path)
        models = self.train(np.ones((1, self.n_players), bool), seed=0, progress=True)  # the long one
        path.parent.mkdir(parents=True, exist_ok=True)
        self.family.save(models, path)
        self.full_model_trained = True
        return models

    def model_access(self, items=None, shuffle: bool = False):
        """The full model for model-based estimators (TRAK, influence, similarity);
        ``items`` optionally subsamples the training items (dataset indices)."""
        make = getattr(self.family, "model_access", None)
        if make is None:
            raise NotImplementedError(f"the {self.family_kind} family of {self.name} offers no model access")
        return make(self, items=items, shuffle=shuffle)

    # --- statistics -------------------------------------------------------------
    def stats_of(self, images, units=None):
        """Statistics of images; ``units`` is the unit each was generated for."""
        return self.scorer.stats(images, units)

    def score(self, stats) -> dict[str, float]:
        out = self.scorer.score(stats)
        for u, v in out.items():
            if not np.isfinite(v):
                raise ValueError(f"{self.name}: utility {u} is {v} (non-finite)")
        return out

    def retrain_stats(self, masks: np.ndarray, seed: int) -> list:
        """Train one model per coalition (rows of masks, none empty) and return the
        statistics of ``config.n_samples`` samples from each, units in proportion pi_S."""
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        return self._sampled_stats(self.train(masks, seed), masks, seed)

    def _sampled_stats(self, models, masks, seed: int) -> list:
        """Statistics of ``n_samples`` samples of model k per coalition k, units in
        proportion pi_S, seeded by (seed + 1000, coalition): the retraining and the
        fine-tuning games sample alike."""
        labels = np.stack([self.coalition_units(m) for m in masks])
        images = self.sample(models, labels, seed=[coalition_seed(seed + 1000, m) for m in masks])
        return [self.stats_of(images[k], labels[k]) for k in range(len(masks))]

    def finetune_stats(self, masks, seed: int, init: dict, keep: dict, steps: int, lr: float) -> list:
        """Fine-tune ``init`` (a one-model state dict, e.g. the pruned full model) on each
        coalition's data for ``steps`` steps with ``keep`` masks held at zero, and return
        the statistics of ``config.n_samples`` samples from each (the fine-tuning game;
        families that fine-tune: mlp)."""
        if self.family_kind != "mlp":
            raise NotImplementedError(f"the fine-tuning game is implemented for the mlp family; {self.name} "
                                      f"uses {self.family_kind}")
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        members = [self.members(m) for m in masks]
        models = self.family.train(self.training_data, members, [coalition_seed(seed, m) for m in masks],
                                   init=init, keep=keep, steps=steps, lr=lr)
        return self._sampled_stats(models, masks, seed)

    def real_stats(self):
        """Statistics of the real data (FID's reference; None where no utility needs it)."""
        return self.scorer.real_stats()

    def empty_stats(self):
        """Statistics of the empty coalition's defined output: the family's prior, asked
        for the full data's units in proportion."""
        if not hasattr(self, "_empty"):
            units = self.coalition_units(np.ones(self.n_players, bool))
            self._empty = self.stats_of(self.family.prior(units), units)
        return self._empty

    def bank_stats(self):
        """The proxy's sample bank of the full model: per-unit statistics, or a bank
        object with ``mixture(unit_weights)``."""
        return self.scorer.bank_stats()

    def bank(self):
        """The proxy's bank as one object: ``mixture(unit_weights) -> statistics`` (and,
        for sufficient statistics, ``utility(name, weights)`` batched over coalitions)."""
        from surrogateshap.tasks.features.statistics import (
            StatsBank,
            needs_label_moments,
        )

        stats = self.bank_stats()
        if not isinstance(stats, (list, tuple)):
            return stats
        prior = self.empty_stats() if needs_label_moments(self.utilities) else None  # a per-label utility's
        return StatsBank(stats, self.real_stats(), device=self.device, prior=prior)  # CUDA: eigensolves there

    def regenerate_stats(self, mask, seed: int):
        """Statistics of freshly generated samples of the full model for coalition
        ``mask`` (units in proportion pi_S): the paper's per-coalition protocol."""
        labels = self.coalition_units(np.asarray(mask, bool))
        return self.stats_of(self.sample(self.full_model, labels[None], seed=seed)[0], labels)

    # --- the proxy that sees sellers ------------------------------------------
    def seller_view(self) -> SellerView:
        """This task's data with each (contributor, unit) pair as a unit of its own: the
        proxy that tells apart contributors who share a label (:class:`SellerView`).
        Raises ValueError where every unit already belongs to one contributor (the
        task's own proxy then sees its sellers). One view per task; its bank is stored in
        its own cache (the task's configuration id + ``+seller``)."""
        if "_seller_view" not in self.__dict__:
            self._seller_view = SellerView(self)
        return self._seller_view

    # --- games ----------------------------------------------------------------
    def retraining_game(self, utility: str, seed: int = 0, cache: bool = True, executor=None, **kw):
        from surrogateshap.tasks.games import RetrainingGame

        return RetrainingGame(self, utility, seed=seed, cache=cache, executor=executor, **kw)

    def proxy_game(self, utility: str, mode: str = "bank", seed: int = 0, executor=None,
                   samples: int | None = None, fid_rank: int | None = None,
                   memory_budget: int | None = None, eig_backend: str | None = None):
        """The proxy game; ``fid_rank`` (approximate FID, named in its identity),
        ``memory_budget`` (bytes per call) and ``eig_backend`` (where FID's eigensolves run)
        are :class:`~surrogateshap.tasks.games.ProxyGame`'s."""
        from surrogateshap.tasks.games import ProxyGame

        return ProxyGame(self, utility, mode=mode, seed=seed, executor=executor, samples=samples,
                         fid_rank=fid_rank, memory_budget=memory_budget, eig_backend=eig_backend)

    def check_utility(self, utility: str):
        if utility not in self.utilities:
            raise KeyError(f"task {self.name} has no utility {utility!r}; it offers {self.utilities}")


class SellerView(DiffusionTask):
    """A task seen through its sellers: the same items, each (contributor, unit) pair a
    conditioning unit of its own, for the proxy game only.

    The paper's proxy conditions the one full model on units (labels), so contributors
    who supply the same label are symmetric in it and get equal values however good
    their data. Here the full model is trained on the same items conditioned on who
    supplied them, so each seller's bank carries its own data's quality, and a coalition
    mixes its sellers' banks in proportion to their items. Samples are scored by the
    parent task as the parent's unit they belong to (its scoring networks, reference and
    per-sample scores), so a utility means what it means in the parent's retraining
    game, which this view never trains. Its cache is the parent's configuration id plus
    ``+seller``: its full model and its bank's statistics (stored like the parent's, so
    every process and task object maps them).
    """

    view = "seller"

    def __init__(self, parent: DiffusionTask):
        if isinstance(parent, SellerView):
            raise ValueError(f"{parent.name}: already a seller view")
        self.parent = parent
        self.name, self.utilities, self.config_cls = parent.name, parent.utilities, parent.config_cls
        self.config, self.cache_dir = parent.config, parent.cache_dir
        self._parts = {}
        if parent.scorer_kind not in ("net", "inception"):
            raise ValueError(f"{parent.name}: the seller view needs an image scorer of sufficient statistics "
                             f"('net' or 'inception'); this task scores with {parent.scorer_kind!r}")
        self.unit_parent  # refuse a task without sellers below its units now, not at first use

    @property
    def players(self) -> tuple[str, ...]:
        return self.parent.players

    @cached_property
    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.parent
        pairs, inverse = np.unique(np.stack([p.item_contributor, p.item_unit], 1), axis=0, return_inverse=True)
        if len(pairs) == p.n_units:
            raise ValueError(f"{p.name}: each of its {p.n_units} units already belongs to one contributor, so "
                             "its own proxy tells its contributors apart (no seller view needed)")
        return pairs, inverse.reshape(-1)

    @cached_property
    def unit_parent(self) -> np.ndarray:
        """(n_units,) the parent's unit of each seller unit."""
        return self._pairs[0][:, 1]

    def load_dataset(self):
        p, (pairs, inverse) = self.parent, self._pairs
        names = tuple(f"{p.players[c]}/{p.units[u]}" for c, u in pairs)
        return dataclasses.replace(p.dataset, labels=inverse.astype(np.int64), units=names,
                          contributors=np.asarray(p.item_contributor, dtype=np.int64))

    def config_id(self) -> str:
        return f"{self.parent.config_id()}+seller"

    # scoring is the parent's, with the parent's units
    def scoring_recipes(self) -> dict:
        return self.parent.scoring_recipes()

    def scoring_networks(self) -> dict:
        return self.parent.scoring_networks()

    def scoring_parts(self) -> dict[str, str]:
        return self.parent.scoring_parts()

    def scoring_id(self) -> str:
        return self.parent.scoring_id()

    def features(self, images):
        return self.parent.features(images)

    def stats_of(self, images, units=None):
        return self.parent.stats_of(images, None if units is None else self.unit_parent[np.asarray(units)])

    def score(self, stats) -> dict[str, float]:
        return self.parent.score(stats)

    def real_stats(self):
        return self.parent.real_stats()

    def empty_stats(self):
        return self.parent.empty_stats()

    def proxy_game(self, utility: str, mode: str = "bank", **kw):
        """The bank proxy only (the view refuses ``regenerate_stats``): another mode is
        refused when the game is made, not after the full model and its bank are trained."""
        if mode not in ("bank", "stats"):
            raise ValueError(f"{self.name}'s seller view plays the proxy game with mode='bank' only, "
                             f"not {mode!r}")
        return super().proxy_game(utility, mode=mode, **kw)

    def _proxy_only(self, *_, **__):
        raise NotImplementedError(f"{self.name}'s seller view serves the proxy game only; retrain, fine-tune "
                                  "or read the model of the task itself")

    retraining_game = retrain_stats = finetune_stats = model_access = regenerate_stats = _proxy_only
