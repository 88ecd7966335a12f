"""``spurious-sites``: the clinical audit's protocol with a spurious correlation planted
where we know it is, so an attribution can be checked for finding its sources.

Players are "sites" whose images are real Fashion-MNIST garments (Debian
``dataset-fashion-mnist``; each site its own Dirichlet mix of the 10 classes, images
disjoint across sites). A few planted sites (``config.planted``) stamp a small bright
square in the top-left corner on a fraction (``marker_fraction``) of their images of
one class (``target_class``). The model is conditioned on (site, class) units by
default (``condition_on_class``; with it off, on the site alone, as the paper's prompt
"a dermoscopic lesion from hospital {site}": the small CPU model then does not tie the
marker to the class, see the dataset card). The utility ``marker_correlation`` is the
phi coefficient between "a marker is detected" and "the image shows the target class"
over generated images, from a marker detector and a class classifier the task trains
on its own images (detector: clean vs stamped copies of every image; classifier: both
copies with the same class label, so the marker tells it nothing). It measures how much of
the shortcut a coalition's model learned, not image quality: the planted sites should
carry the largest values (:func:`surrogateshap.metrics.precision_at_k` on
``planted_sites``).

The paper-scale audit (real dermoscopy, hospital sites, a sex-melanoma correlation) is
the ``dermoscopy-sites`` task (:mod:`surrogateshap.tasks.dermoscopy`, Stable Diffusion +
LoRA); :func:`load_dermoscopy` and :func:`load_attribute_classifiers` read its local
files and fail clearly.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import ClassVar
from functools import cached_property
from pathlib import Path

import numpy as np

from surrogateshap.tasks.base import allocate_counts
from surrogateshap.tasks.composed import DATA_DIR, ImageTask, PresetConfig
from surrogateshap.tasks.datasets import FASHION_CLASSES, DataMissingError, ImageDataset, load_fashion_mnist, resize
from surrogateshap.tasks.statistics import StatsBank, bank_score, register_utility
from surrogateshap.tasks.t2i_metrics import load_attribute_classifier, phi_from_means

__all__ = ["SpuriousSitesConfig", "SpuriousSitesTask", "spurious_sites_dataset", "stamp_marker",
           "DermoscopyConfig", "DermoscopyData", "load_dermoscopy", "load_attribute_classifiers",
           "DERMOSCOPY_PROMPT"]


def stamp_marker(images: np.ndarray, size: int = 3) -> np.ndarray:
    """A copy of images (N, C, H, W) in [-1, 1] with a ``size`` x ``size`` white square
    in the top-left corner (pixel value 1)."""
    out = np.array(images, dtype=np.float32, copy=True)
    out[..., :size, :size] = 1.0
    return out


@dataclass(frozen=True)
class SpuriousSitesConfig(PresetConfig):
    n_sites: int = 12
    per_site: int = 150
    planted: tuple[int, ...] = (2, 5, 9)  # sites that stamp the marker
    target_class: int = 3  # dress
    marker_fraction: float = 0.8  # of a planted site's target-class images
    marker_size: int = 3
    alpha: float = 2.0  # Dirichlet concentration of each site's class mix
    condition_on_class: bool = True  # units = (site, class) pairs; False: units = sites
    seed: int = 0
    size: int = 16
    family: str = "mlp"
    hidden: int = 256  # mlp
    blocks: int = 2  # mlp
    skip: bool = True  # mlp
    channels: tuple[int, ...] = (32, 64)  # unet
    layers_per_block: int = 1  # unet
    attention: bool = False  # unet
    # 4,000 steps: at 1,500 the samples' class matched their unit's in 32% and the marker
    # correlation of the full model's samples was 0.09 (dataset card)
    steps: int = 4000
    batch_size: int = 128
    lr: float = 3e-3
    p_uncond: float = 0.1
    guidance: float = 2.0
    sample_steps: int = 20
    n_samples: int = 1000
    bank_per_label: int = 200  # per (site, class) unit (23,800 images: the proxy's one-off set-up)
    n_modes: int = 20
    featurizer: str = "net"
    models_per_batch: int = 8  # speed only
    device: str = "auto"

    PRESETS: ClassVar[dict[str, dict]] = {
        "ci": dict(per_site=60, hidden=128, steps=300, n_samples=200, bank_per_label=10),
        "default": {},
        "paper": dict(family="unet", steps=3000, batch_size=64, lr=1e-3, guidance=1.4,
                      n_samples=2000, bank_per_label=200, models_per_batch=1),
    }


def spurious_sites_dataset(config: SpuriousSitesConfig,
                           fashion_root=None) -> tuple[ImageDataset, np.ndarray, np.ndarray]:
    """(dataset with the markers, the same images clean, stamped (N,) bool).

    Site s takes, per class, the next unused training images of that class in file
    order (counts from its Dirichlet mix). On each planted site, round(marker_fraction
    x n) of its n target-class images, chosen under the seed, are stamped."""
    c = config
    bad = [s for s in c.planted if not 0 <= s < c.n_sites]
    if bad or len(set(c.planted)) != len(c.planted):
        raise ValueError(f"planted sites {c.planted} must be distinct indices in 0..{c.n_sites - 1}")
    if not 0 <= c.target_class < len(FASHION_CLASSES) or not 0 <= c.marker_fraction <= 1:
        raise ValueError("target_class must be a Fashion-MNIST class and marker_fraction in [0, 1]")
    fx, fy = load_fashion_mnist("train", fashion_root)
    rng = np.random.default_rng([c.seed, 2])
    mixes = rng.dirichlet(np.full(len(FASHION_CLASSES), c.alpha), size=c.n_sites)
    counts = np.stack([allocate_counts(c.per_site, m) for m in mixes])
    by_class = [np.flatnonzero(fy == k) for k in range(len(FASHION_CLASSES))]
    used = np.zeros(len(FASHION_CLASSES), dtype=int)
    idx, sites = [], []
    for s in range(c.n_sites):
        for k in np.flatnonzero(counts[s]):
            take = by_class[k][used[k] : used[k] + counts[s, k]]
            if len(take) < counts[s, k]:
                raise ValueError(f"not enough images of class {FASHION_CLASSES[k]} for {c.n_sites} sites")
            used[k] += counts[s, k]
            idx.append(take)
            sites.append(np.full(len(take), s))
    idx, sites = np.concatenate(idx), np.concatenate(sites).astype(np.int64)
    classes = fy[idx].astype(np.int64)
    clean = resize(fx[idx][:, None], c.size)
    stamped = np.zeros(len(idx), bool)
    for s in c.planted:
        pool = np.flatnonzero((sites == s) & (classes == c.target_class))
        k = int(np.floor(c.marker_fraction * len(pool) + 0.5))
        stamped[np.sort(rng.permutation(pool)[:k])] = True
    images = clean.copy()
    images[stamped] = stamp_marker(clean[stamped], c.marker_size)
    players = tuple(f"site_{s:02d}" for s in range(c.n_sites))
    if not c.condition_on_class:
        return ImageDataset("spurious-sites", images, sites, players, classes=classes), clean, stamped
    pairs = sorted(set(zip(sites.tolist(), classes.tolist())))
    index = {p: i for i, p in enumerate(pairs)}
    units = tuple(f"site_{s:02d}/{FASHION_CLASSES[k]}" for s, k in pairs)
    labels = np.array([index[p] for p in zip(sites.tolist(), classes.tolist())], dtype=np.int64)
    ds = ImageDataset("spurious-sites", images, labels, players, units=units, contributors=sites,
                      classes=classes)
    return ds, clean, stamped


@register_utility("marker_correlation")
def _marker_correlation(bank: StatsBank, w: np.ndarray) -> np.ndarray:
    """Phi coefficient of (marker detected, target class) over the samples, from the
    mixed means of the scores ``marker``, ``target``, ``marker_target`` (0/1 per
    sample); 0 where either is constant (no association can be measured)."""
    return phi_from_means(*(w @ bank_score(bank, k) for k in ("marker", "target", "marker_target")))


class SpuriousSitesTask(ImageTask):
    name = "spurious-sites"
    shipped_nets = {k: DATA_DIR / f"spurious_sites_{k}net.pt" for k in ("features", "marker", "class")}
    config_cls = SpuriousSitesConfig
    utilities = ("marker_correlation", "neg_fid")

    @property
    def players(self) -> tuple[str, ...]:
        return tuple(f"site_{s:02d}" for s in range(self.config.n_sites))

    @property
    def planted_sites(self) -> np.ndarray:
        """Player indices of the sites that planted the marker (precision@k's truth)."""
        return np.array(sorted(self.config.planted), dtype=int)

    @cached_property
    def _built(self):
        return spurious_sites_dataset(self.config)

    def load_dataset(self):
        return self._built[0]

    @property
    def stamped(self) -> np.ndarray:
        """(n_items,) whether each training image carries the marker."""
        return self._built[2]

    def scoring_recipes(self) -> dict:
        """The featurizer's network, the marker detector (clean (0) vs stamped (1), trained
        on both versions of every image) and the class classifier (the garment class,
        trained on clean and stamped copies under the same label, so the marker is no cue
        to the class)."""
        clean = self._built[1]
        x = np.concatenate([clean, stamp_marker(clean, self.config.marker_size)])
        return {**super().scoring_recipes(),
                "marker": self.net_recipe("marker", x, np.repeat([0, 1], len(clean)), 2),
                "class": self.net_recipe("class", x, np.tile(self.dataset.classes, 2), len(FASHION_CLASSES))}

    def scoring_networks(self) -> dict:
        return {**super().scoring_networks(), "marker": self.marker_detector, "class": self.class_classifier}

    @cached_property
    def marker_detector(self):
        return self.scoring_recipes()["marker"].load()

    @cached_property
    def class_classifier(self):
        return self.scoring_recipes()["class"].load()

    def _predict(self, net, images) -> np.ndarray:
        import torch

        with torch.no_grad():
            x = torch.as_tensor(np.asarray(images), dtype=torch.float32).reshape(len(images), -1)
            return net.classify(x).argmax(1).numpy()

    def sample_scores(self, images, feats, units) -> dict:
        m = (self._predict(self.marker_detector, images) == 1).astype(float)
        t = (self._predict(self.class_classifier, images) == self.config.target_class).astype(float)
        return {"marker": m, "target": t, "marker_target": m * t}


# --- the paper-scale audit: local files only -------------------------------------------
DERMOSCOPY_PROMPT = "a dermoscopic lesion from hospital {site}"


@dataclass(frozen=True)
class DermoscopyConfig:
    """Where the paper-scale audit's files are (nothing downloads)."""

    data_dir: str  # holds the metadata CSV and the images it names
    metadata: str = "metadata.csv"
    image_column: str = "image"  # path of the image, relative to data_dir
    site_column: str = "site"
    sex_classifier: str = "sex_classifier.pt"  # TorchScript files in data_dir
    melanoma_classifier: str = "melanoma_classifier.pt"


@dataclass(frozen=True)
class DermoscopyData:
    """Items (path, site index, prompt) for a text-to-image pipeline; players = sites."""

    sites: tuple[str, ...]
    paths: tuple[Path, ...]
    site_index: np.ndarray
    prompts: tuple[str, ...]

    @property
    def items(self) -> list[tuple[Path, int, str]]:
        return list(zip(self.paths, self.site_index.tolist(), self.prompts))


def load_dermoscopy(config: DermoscopyConfig) -> DermoscopyData:
    """Read the metadata CSV (any columns, two of them named by the config), check every
    image exists, and give each item its site's prompt. Sites in order of first
    appearance."""
    root = Path(config.data_dir)
    path = root / config.metadata
    if not path.exists():
        raise DataMissingError(f"dermoscopy metadata {path} not found (a CSV with columns "
                               f"{config.image_column!r} and {config.site_column!r})")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        for col in (config.image_column, config.site_column):
            if col not in cols:
                raise ValueError(f"{path}: no column {col!r}; the columns are {cols}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path} has no rows")
    sites, site_of, paths, index = [], {}, [], []
    for line, row in enumerate(rows, start=2):
        site, image = (row[config.site_column] or "").strip(), (row[config.image_column] or "").strip()
        if not site or not image:
            raise ValueError(f"{path} line {line}: empty {config.site_column!r} or {config.image_column!r}")
        if site not in site_of:
            site_of[site] = len(sites)
            sites.append(site)
        paths.append(root / image)
        index.append(site_of[site])
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise DataMissingError(f"{len(missing)} image(s) named in {path} are missing, e.g. {missing[0]}")
    prompts = tuple(DERMOSCOPY_PROMPT.format(site=sites[i]) for i in index)
    return DermoscopyData(tuple(sites), tuple(paths), np.array(index, dtype=np.int64), prompts)


def load_attribute_classifiers(config: DermoscopyConfig, device="cpu") -> dict:
    """The audit's attribute classifiers (TorchScript: image batch -> logits), read from
    local files: {"sex": module, "melanoma": module}."""
    return {name: load_attribute_classifier(Path(config.data_dir) / file, name, device)
            for name, file in (("sex", config.sex_classifier), ("melanoma", config.melanoma_classifier))}
