"""The text-to-image tasks' scorer: samples -> per-image features (a
:class:`~surrogateshap.tasks.features.t2i.FeatureSet`).

The paper's T2I utilities are not sufficient statistics (quantiles of aesthetic scores,
an entropy over clusters fitted to the generated set, LPIPS to each prompt's training
image), so a coalition's samples are kept as per-image features with weights. The
featurizer (CLIP embedder, LAION aesthetic head, LPIPS, attribute classifiers) is built
from the config's local files; nothing downloads. The proxy's bank is a resumable
on-disk :class:`~surrogateshap.tasks.features.sample_bank.SampleBank` of the full
model's images, ``bank_per_unit`` per unit, each image from its own seed.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from surrogateshap.game import stable_hash
from surrogateshap.tasks.features.t2i import (
    FeatureSet,
    T2IFeaturizer,
    load_attribute_classifier,
    t2i_utility,
)

__all__ = ["T2IScorer"]


class T2IScorer:
    """Scores a T2I task's samples per image; ``featurizer`` may be given (tests)."""

    def __init__(self, task, featurizer: T2IFeaturizer | None = None):
        self.task = task
        if featurizer is not None:
            self.__dict__["featurizer"] = featurizer

    @cached_property
    def featurizer(self) -> T2IFeaturizer:
        """CLIP embedder, aesthetic head and LPIPS as the utilities need, from local files."""
        from surrogateshap.tasks.common import resolve_device
        from surrogateshap.tasks.features.clip import AestheticHead, CLIPImageEmbedder
        from surrogateshap.tasks.features.lpips import LPIPS

        task = self.task
        task.require_files()
        c = task.config
        need_clip = any(u.startswith("aesthetic") or u == "diversity" for u in task.utilities)
        embedder = aesthetic = lpips = refs = None
        dev = resolve_device(c.device)
        if need_clip:
            if not c.clip_path:
                raise ValueError(f"{task.name}: utilities {task.utilities} need CLIP: set clip_path")
            embedder = (CLIPImageEmbedder.from_open_clip(c.clip_model, c.clip_path, device=dev)
                        if c.clip_backend == "open_clip" else CLIPImageEmbedder.from_transformers(c.clip_path, dev))
        if any(u.startswith("aesthetic") for u in task.utilities):
            if not c.aesthetic_head:
                raise ValueError(f"{task.name}: aesthetic utilities need aesthetic_head (the predictor's .pth)")
            aesthetic = AestheticHead.from_file(c.aesthetic_head)
        if "neg_lpips" in task.utilities:
            if not c.lpips_backbone:
                raise ValueError(f"{task.name}: neg_lpips needs lpips_backbone (AlexNet weights file)")
            lpips = LPIPS(c.lpips_backbone, device=dev)
            refs = self.unit_references()
        files = task.attribute_files() if hasattr(task, "attribute_files") else {}
        attributes = {n: load_attribute_classifier(f, n, device=dev) for n, f in files.items()}
        size = getattr(c, "attribute_size", None)
        parts = [c.clip_backend, c.clip_model, c.clip_path, c.aesthetic_head, c.lpips_backbone]
        return T2IFeaturizer(embedder, aesthetic, lpips, refs, attributes=attributes, attribute_size=size,
                             name=stable_hash(parts + ([sorted(files.items()), size] if files else [])))

    def unit_references(self) -> dict:
        """unit -> the training image of its first item (LPIPS's reference; loaded when used)."""
        first = {}
        for it in self.task.dataset.items:
            first.setdefault(it.prompt, it.image)
        return first

    # --- the scoring networks: named by the config's files -----------------------------
    def recipes(self) -> dict:
        return {}

    def networks(self) -> dict:
        return {}

    def parts(self) -> dict[str, str]:
        return {}

    def features(self, images):
        raise NotImplementedError("a T2I task's features are per-image dicts: use stats(images, units)")

    # --- statistics -------------------------------------------------------------------
    def stats(self, images, units) -> FeatureSet:
        """Per-image features of images generated for ``units`` (unit indices)."""
        if units is None:
            raise ValueError(f"{self.task.name} scores images against their units: pass the unit of each image")
        units = np.asarray(units, dtype=np.int64)
        names = [self.task.units[u] for u in units]
        counts = np.bincount(units, minlength=self.task.n_units)
        return FeatureSet(self.featurizer(images, names), info={"unit_counts": counts})

    def real_stats(self):
        """None: T2I utilities need no real-data statistics (LPIPS compares each image
        with its own prompt's training image)."""
        return None

    def score(self, fs: FeatureSet) -> dict[str, float]:
        c = self.task.config
        return {u: t2i_utility(u, fs, **({"k": c.n_clusters} if u == "diversity" else {}))
                for u in self.task.utilities}

    # --- the proxy's sample bank ------------------------------------------------------
    def sample_bank(self):
        """The full model's on-disk bank (made with these settings only)."""
        from surrogateshap.tasks.features.sample_bank import SampleBank

        task, c = self.task, self.task.config
        pipe = task.family.pipeline
        header = {"task": task.config_id(), "adapter": "full-seed0", "featurizer": self.featurizer.name,
                  "seed": c.bank_seed, "resolution": pipe.resolution, "guidance": pipe.guidance,
                  "sample_steps": pipe.sample_steps}
        return SampleBank(task.cache.root / f"bank-{stable_hash(header)}", header)

    def build_bank(self, progress: bool = True) -> int:
        """Generate the full model's missing bank images (resumable); returns how many."""
        task, c = self.task, self.task.config
        bank = self.sample_bank()
        adapter = None  # loaded on the first batch only: nothing to load when the bank is complete

        def generate(pairs):
            nonlocal adapter
            if adapter is None:
                adapter = task.full_model[0]
            imgs = task.family.sample_pairs(adapter, pairs, c.bank_seed)
            return self.featurizer(imgs, [u for u, _ in pairs])

        return bank.build(task.units, c.bank_per_unit, generate, batch_size=c.sample_batch, progress=progress)

    def bank_stats(self):
        """The complete bank in memory (:class:`BankFeatures`, ``mixture(weights, n)``)."""
        if not hasattr(self, "_bank"):
            self.build_bank()
            self._bank = self.sample_bank().features(self.task.units, self.task.config.bank_per_unit)
        return self._bank
