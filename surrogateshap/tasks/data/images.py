"""Image datasets of the tasks: real images, each item's contributor and label.

Every loader reads local files only (nothing downloads) and fails with one
:class:`DataMissingError` naming the file, and the package that ships it, when they are
absent. An :class:`ImageDataset` holds images as float32 (N, C, H, W) in [-1, 1], the
conditioning label of each item (= its contributor: one player per class, unless the
dataset names its ``units`` and ``contributors``), and the players' names.

Sources:
- scikit-learn's bundled 8x8 digits (``digits``);
- Fashion-MNIST, IDX files of the Debian package ``dataset-fashion-mnist``
  (/usr/share/datasets/fashion-mnist/);
- Animal-MNIST, arrays in the PyPI package ``animal-mnist`` (``animal_mnist/data/``;
  pickled numpy arrays, read with an unpickler that admits numpy arrays only);
- CIFAR-100, binary release (``cifar-100-binary/train.bin``: records of 1 coarse byte,
  1 fine byte, 3,072 pixel bytes, channel-major R, G, B planes of 32x32).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DataMissingError", "ImageDataset", "FASHION_MNIST_DIR", "FASHION_CLASSES", "ANIMAL_CLASSES",
    "CIFAR20_FINE", "CIFAR20_NAMES", "read_idx", "load_fashion_mnist", "load_animal_mnist",
    "load_cifar100_binary", "cifar100_path", "digits_dataset", "fashion_animal20_dataset",
    "cifar20_dataset", "resize", "require_file", "RefusedPickleError",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("t_shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle_boot")
#: Animal-MNIST's 10 classes; label i = the i-th of the package's alphabetical list
ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
#: CIFAR-20 = these CIFAR-100 fine labels (the paper's indices), in this player order
CIFAR20_FINE = tuple(range(40, 45)) + tuple(range(55, 65)) + tuple(range(80, 85))
CIFAR20_NAMES = ("lamp", "lawn_mower", "leopard", "lion", "lizard", "otter", "palm_tree", "pear",
                 "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum",
                 "squirrel", "streetcar", "sunflower", "sweet_pepper", "table")
CIFAR_RECORD = 2 + 3 * 32 * 32


class DataMissingError(FileNotFoundError):
    """A task's data files are absent or unreadable; the message names the file and
    what provides it, or what is wrong with it."""


class RefusedPickleError(pickle.UnpicklingError):
    """A data file's pickle holds something other than numpy arrays (it could run code)."""


def require_file(path: str | os.PathLike, what: str, provided_by: str) -> Path:
    """``path`` when it is a regular file; else one :class:`DataMissingError` naming it,
    ``what`` it is and what provides it (absent), or what stands in its place."""
    path = Path(path)
    if not path.exists():
        raise DataMissingError(f"{what} {path} not found: {provided_by}")
    if not path.is_file():
        raise DataMissingError(f"{what} {path} is a folder or other non-file, not a file: {provided_by}")
    return path


@dataclass(frozen=True)
class ImageDataset:
    """Images (N, C, H, W) float32 in [-1, 1]; ``labels`` (N,) = conditioning label.

    By default a label is a contributor index. A dataset whose conditioning units are
    not its contributors (a garment type of one brand, a site) names them in ``units``
    (``labels`` index them) and gives each item's contributor in ``contributors``;
    ``classes`` optionally records the class each item shows.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    players: tuple[str, ...]
    units: tuple[str, ...] | None = None
    contributors: np.ndarray | None = None
    classes: np.ndarray | None = None

    def __post_init__(self):
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise ValueError(f"{self.name}: need images (N, C, H, W) and N labels, got "
                             f"{self.images.shape} and {self.labels.shape}")
        n_labels = len(self.players if self.units is None else self.units)
        if self.labels.min() < 0 or self.labels.max() >= n_labels:
            raise ValueError(f"{self.name}: labels must lie in 0..{n_labels - 1}")
        if (self.units is None) != (self.contributors is None):
            raise ValueError(f"{self.name}: give both units and contributors, or neither")
        if self.contributors is not None:
            c = self.contributors
            if c.shape != self.labels.shape or c.min() < 0 or c.max() >= len(self.players):
                raise ValueError(f"{self.name}: contributors must be N indices in 0..{len(self.players) - 1}")
        if self.classes is not None and self.classes.shape != self.labels.shape:
            raise ValueError(f"{self.name}: classes must hold one entry per item")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    # --- what every task dataset offers: contributors, units, each item's unit ----------
    @property
    def item_contributor(self) -> np.ndarray:
        return self.labels if self.contributors is None else self.contributors

    @property
    def unit_names(self) -> tuple[str, ...]:
        return tuple(self.players if self.units is None else self.units)

    @property
    def item_unit(self) -> np.ndarray:
        return self.labels


# --- raw readers ------------------------------------------------------------------
def _read_bytes(path: Path, what: str) -> bytes:
    """The bytes of ``path``, gunzipped when it ends in .gz; a cut-short or damaged file
    raises one :class:`DataMissingError` naming it."""
    try:
        if path.suffix != ".gz":
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, zlib.error, OSError) as e:  # gzip.BadGzipFile is an OSError
        raise DataMissingError(f"{what} {path} cannot be read: damaged or cut short "
                               f"({type(e).__name__}: {e}); reinstall it") from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (big-endian header: magic 0x0000 0x08 ndim, then ndim uint32 sizes)."""
    path = require_file(path, "IDX file", "expected an IDX file (e.g. of Fashion-MNIST)")
    raw = _read_bytes(path, "IDX file")
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or len(raw) < 4 + 4 * raw[3]:
        raise DataMissingError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataMissingError(f"{path} is truncated: header says {dims}, holds {body.size} bytes")
    return body.reshape(dims)


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of Fashion-MNIST."""
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    prefix = {"train": "train", "test": "t10k"}[split]
    files = [require_file(root / f"{prefix}-{kind}-ubyte.gz", "Fashion-MNIST file",
                          "install the Debian package dataset-fashion-mnist (apt-get update && "
                          "apt-get install -y dataset-fashion-mnist)") for kind in ("images-idx3", "labels-idx1")]
    x, y = read_idx(files[0]), read_idx(files[1])
    if len(x) != len(y):
        raise DataMissingError(f"{files[0]} and {files[1]} disagree on the number of items")
    return x, y


class _NumpyOnly(pickle.Unpickler):
    """Admits numpy arrays and dtypes, nothing else (a pickle can run code)."""

    _OK = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
           ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self._OK:
            raise RefusedPickleError(f"refusing to load {module}.{name} from a data file")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = module.replace("numpy.core", "numpy._core")
        return super().find_class(module, name)


def animal_mnist_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DataMissingError(
            "Animal-MNIST not found: install the PyPI package animal-mnist "
            "(pip install --no-deps animal-mnist; its own requirements, tensorflow among "
            "them, are not needed)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"


def _whole_numbers(a: np.ndarray, top: int, path: Path, what: str, dtype) -> np.ndarray:
    """``a`` as ``dtype`` when every entry is a whole number in 0..top (a float copy of the
    same pixels or labels is the same data); else one error naming the file: a cast would
    wrap 256 to 0, and 0..1-scaled pixels would be read as black."""
    if a.dtype.kind not in "iuf":
        raise DataMissingError(f"Animal-MNIST file {path}: {what} of dtype {a.dtype}, not numbers")
    ok = np.isfinite(a) & (a == np.round(a)) & (a >= 0) & (a <= top) if a.dtype.kind == "f" else (a >= 0) & (a <= top)
    if not ok.all():
        bad = a.reshape(-1)[np.flatnonzero(~ok.reshape(-1))[0]]
        raise DataMissingError(f"Animal-MNIST file {path}: {what} must be whole numbers in 0..{top}, "
                               f"found {bad!r} (dtype {a.dtype}); reinstall the PyPI package animal-mnist")
    return a.astype(dtype, copy=False)


def load_animal_mnist(root: str | os.PathLike | None = None):
    """(images uint8 (10000, 28, 28), labels int (10000,)) of Animal-MNIST."""
    root = Path(root) if root is not None else animal_mnist_dir()
    arrays, paths = [], []
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        path = require_file(root / name, "Animal-MNIST file", "reinstall the PyPI package animal-mnist "
                            "(pip install --no-deps animal-mnist)")
        try:
            with gzip.open(path, "rb") as f:
                arrays.append(np.asarray(_NumpyOnly(f).load()))
        except RefusedPickleError:
            raise
        except (EOFError, zlib.error, OSError, pickle.UnpicklingError, ValueError, TypeError,
                AttributeError, IndexError) as e:
            raise DataMissingError(f"Animal-MNIST file {path} is not a readable gzipped array, damaged "
                                   f"or cut short ({type(e).__name__}: {e}): reinstall the PyPI package "
                                   "animal-mnist") from e
        paths.append(path)
    x, y = arrays
    if x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y):
        raise DataMissingError(f"{root}: unexpected arrays {x.shape}, {y.shape}")
    return (_whole_numbers(x, 255, paths[0], "pixels", np.uint8),
            _whole_numbers(y, len(ANIMAL_CLASSES) - 1, paths[1], "labels", np.int64))


def cifar100_path(data_dir: str | os.PathLike | None = None) -> Path:
    """``<data_dir>/cifar-100-binary/train.bin``; data_dir defaults to $SURROGATESHAP_DATA."""
    base = data_dir if data_dir is not None else os.environ.get("SURROGATESHAP_DATA")
    if base is None:
        raise DataMissingError(
            "CIFAR-100 binary release not located: pass data_dir= (the folder holding "
            "cifar-100-binary/train.bin) or set SURROGATESHAP_DATA")
    return Path(base) / "cifar-100-binary" / "train.bin"


def load_cifar100_binary(path: str | os.PathLike):
    """(images uint8 (N, 3, 32, 32), coarse (N,), fine (N,)) of a CIFAR-100 binary file."""
    path = require_file(path, "CIFAR-100 file", "expected the binary release, cifar-100-binary/train.bin")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise DataMissingError(
            f"CIFAR-100 file {path} is truncated or not the binary release: {raw.size} bytes "
            f"is not a whole number of {CIFAR_RECORD}-byte records")
    rec = raw.reshape(-1, CIFAR_RECORD)
    return rec[:, 2:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64), rec[:, 1].astype(np.int64)


# --- task datasets ----------------------------------------------------------------
def resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 or float (N, C, H, W) -> float32 (N, C, size, size) in [-1, 1] (antialiased)."""
    import torch

    x = torch.as_tensor(np.asarray(images, dtype=np.float32) / 255.0)
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            antialias=True, align_corners=False)
    return (x.clamp(0, 1) * 2 - 1).numpy()


def _first_per_class(labels: np.ndarray, classes, per_class: int | None) -> np.ndarray:
    """Indices of the first ``per_class`` items of each class, in file order."""
    out = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if per_class is not None:
            if len(idx) < per_class:
                raise ValueError(f"class {c} has {len(idx)} items, fewer than per_class={per_class}")
            idx = idx[:per_class]
        out.append(idx)
    return np.concatenate(out)


def digits_dataset() -> ImageDataset:
    """scikit-learn's 1,797 8x8 digits, pixels 0..16 scaled to [-1, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 8.0 - 1.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return ImageDataset("digits", x, d.target.astype(np.int64), tuple(f"digit_{i}" for i in range(10)))


def fashion_animal20_dataset(per_class: int = 300, size: int = 16, fashion_root=None,
                             animal_root=None) -> ImageDataset:
    """20 players: the 10 Fashion-MNIST classes (first ``per_class`` training images of
    each) then the 10 Animal-MNIST classes; grayscale, resized to ``size``."""
    fx, fy = load_fashion_mnist("train", fashion_root)
    ax, ay = load_animal_mnist(animal_root)
    fi = _first_per_class(fy, range(10), per_class)
    ai = _first_per_class(ay, range(10), per_class)
    x = np.concatenate([fx[fi], ax[ai]])[:, None]
    y = np.concatenate([fy[fi].astype(np.int64), ay[ai] + 10])
    players = tuple(f"fashion_{c}" for c in FASHION_CLASSES) + tuple(f"animal_{c}" for c in ANIMAL_CLASSES)
    return ImageDataset("fashion-animal20", resize(x, size), y, players)


def cifar20_dataset(data_dir=None, per_class: int | None = None, size: int = 32) -> ImageDataset:
    """CIFAR-20: the CIFAR-100 training images of the 20 fine labels in CIFAR20_FINE
    (500 each), players in that order, RGB resized to ``size``."""
    path = cifar100_path(data_dir)
    x, _, fine = load_cifar100_binary(path)
    counts = np.bincount(fine, minlength=256)[list(CIFAR20_FINE)]
    short = [f"{n} ({c})" for n, c in zip(CIFAR20_NAMES, counts) if c < (per_class or 1)]
    if short and (per_class is not None or len(short) == len(CIFAR20_NAMES)):
        raise DataMissingError(
            f"CIFAR-100 file {path} lacks CIFAR-20 images: {len(short)} of the 20 classes have fewer "
            f"than {per_class or 1} (fine labels {min(CIFAR20_FINE)}-{max(CIFAR20_FINE)}), e.g. "
            f"{', '.join(short[:4])}: is it the CIFAR-100 binary release's train.bin?")
    idx = _first_per_class(fine, CIFAR20_FINE, per_class)
    remap = np.full(100, -1, dtype=np.int64)
    remap[list(CIFAR20_FINE)] = np.arange(20)
    return ImageDataset("cifar20", resize(x[idx], size), remap[fine[idx]], CIFAR20_NAMES)
