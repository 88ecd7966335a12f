"""The image tasks' scorer: samples -> sufficient statistics of their features.

A featurizer (the project's :class:`~surrogateshap.tasks.features.nets.FeatureNet`, or
the FID Inception-v3 from a local file) embeds images; a coalition's samples become a
:class:`~surrogateshap.tasks.features.statistics.LabelStats` (feature mean and second
moment, class posterior, k-means mode histogram over the real features, and the means
of the task's own per-sample scores). These mix linearly, so the proxy's bank is one
:class:`~surrogateshap.tasks.features.statistics.StatsBank` of per-unit statistics
evaluated for a whole batch of coalitions at once.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from surrogateshap.tasks.features.statistics import (
    LabelStats,
    needs_label_moments,
    read_stats,
    stats_from_features,
    utility_from_stats,
    write_stats,
)

__all__ = ["StatsScorer", "BANK_SEED"]

#: the seed of the full model's per-unit bank samples
BANK_SEED = 777


class StatsScorer:
    """Scores an image task's samples through sufficient statistics (featurizer ``net``
    or ``inception``)."""

    def __init__(self, task):
        self.task = task
        self.kind = getattr(task.config, "featurizer", "net")
        if self.kind not in ("net", "inception"):
            raise KeyError(f"unknown featurizer {self.kind!r}; known: net, inception")

    @cached_property
    def featurizer(self):
        from surrogateshap.tasks.features.nets import InceptionFeaturizer, NetFeaturizer

        if self.kind == "inception":
            return InceptionFeaturizer(self.task.config.inception_weights, device=self.task.device)
        return NetFeaturizer.from_recipe(self.task.scoring_recipes()["features"])

    # --- the scoring networks ---------------------------------------------------------
    def recipes(self) -> dict:
        """``features``: the featurizer's classifier of the units, on the real images
        (none with the Inception featurizer, a local weights file)."""
        if self.kind != "net":
            return {}
        ds = self.task.dataset
        return {"features": self.task.net_recipe("features", ds.images, ds.labels, self.task.n_units)}

    def networks(self) -> dict:
        return {"features": self.featurizer.net} if self.kind == "net" else {}

    def parts(self) -> dict[str, str]:
        if self.kind == "inception":
            return {"inception": self.featurizer.digest()}
        from surrogateshap.tasks.features.nets import state_digest

        return {k: state_digest(net.state_dict()) for k, net in self.task.scoring_networks().items()}

    # --- statistics -------------------------------------------------------------------
    def features(self, images):
        """(features, logits) of images in [-1, 1], as float64 numpy arrays."""
        return self.featurizer.features(images)

    @cached_property
    def centroids(self) -> np.ndarray:
        """The k-means modes of the real features (coverage, diversity)."""
        from sklearn.cluster import KMeans

        f, _ = self.features(self.task.dataset.images)
        return KMeans(self.task.config.n_modes, n_init=4, random_state=0).fit(f).cluster_centers_

    @property
    def label_moments(self) -> bool:
        """Whether statistics carry per-label moments over the task's units (a utility of
        the task reads them)."""
        return needs_label_moments(self.task.utilities)

    def stats(self, images, units=None) -> LabelStats:
        """Statistics of images; ``units`` (the unit each was generated for) feeds the
        task's per-sample scores and, where a utility needs them, the per-label moments."""
        f, logits = self.features(images)
        by_label = {"labels": units, "n_labels": self.task.n_units} if self.label_moments else {}
        return stats_from_features(f, logits, self.centroids, self.task.sample_scores(images, f, units), **by_label)

    @cached_property
    def real(self) -> LabelStats:
        """The real data's statistics, computed once and kept in the task's cache (every
        process then whitens FID by the very same covariance)."""
        ds = self.task.dataset
        return self._stored("real", lambda: [self.stats(ds.images, self.task.item_unit)])[0]

    def real_stats(self) -> LabelStats:
        return self.real

    def score(self, stats: LabelStats) -> dict[str, float]:
        real = self.task.real_stats()  # a task may give its own reference statistics
        prior = self.task.empty_stats() if self.label_moments else None  # for a label ``stats`` lacks
        return {u: utility_from_stats(u, stats, real, prior) for u in self.task.utilities}

    def bank_store(self):
        """Where the bank's per-unit statistics live (:meth:`store`)."""
        return self.store("bank")

    def store(self, what: str):
        """The task-cache folder of statistics ``what`` ("bank", "real"), keyed by the
        configuration and the scoring networks (and the bank's seed and size)."""
        from surrogateshap.game import stable_hash
        from surrogateshap.tasks.features.stats_store import ArrayStore

        task = self.task
        identity = {"statistics": what, "task": task.config_id(), "scoring": task.scoring_id()}
        if self.label_moments:  # named only where set: the other tasks' stores keep their keys
            identity["label_moments"] = True
        if what == "bank":
            identity.update(seed=BANK_SEED, per_label=int(task.config.bank_per_label), units=task.n_units)
        return ArrayStore(task.cache.root / f"{what}-stats-{stable_hash(identity)}", identity)

    def _stored(self, what: str, make):
        """The statistics in :meth:`store` (``what``), made by ``make()`` and stored first
        when it holds none."""
        store = self.store(what)
        stats = read_stats(store)
        if stats is None:
            with store.writing() as writer:
                write_stats(writer, make())
            stats = read_stats(store, required=True)
        return stats

    def bank_stats(self) -> list[LabelStats]:
        """Per unit, the statistics of ``bank_per_label`` samples of the full model:
        sampled once and kept in the task's cache (:meth:`store`); every later process
        and task object maps them from there
        (:class:`~surrogateshap.tasks.features.statistics.StoredStats`)."""
        if not hasattr(self, "_bank"):
            self._bank = self._stored("bank", self._sample_bank)
        return self._bank

    def _sample_bank(self) -> list[LabelStats]:
        task = self.task
        B = task.config.bank_per_label
        labels = np.repeat(np.arange(task.n_units), B)
        imgs = task.sample(task.full_model, labels[None], seed=BANK_SEED)[0]
        # the task's stats_of: a view scores its units as its parent's (SellerView)
        return [task.stats_of(imgs[i * B : (i + 1) * B], labels[i * B : (i + 1) * B]) for i in range(task.n_units)]
