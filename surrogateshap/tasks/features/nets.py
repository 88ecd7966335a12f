"""The networks that score image samples: images -> (features, class logits).

FID needs features, Inception Score class logits, coverage features again. The paper
uses Inception-v3; offline the project trains a small classifier (:class:`FeatureNet`)
on the task's own real images and uses its penultimate layer as features. Two kinds:

- :class:`NetFeaturizer`: a FeatureNet made by its :class:`NetRecipe` (seeded, one torch
  thread); shipped weights when they exist, else trained once and cached (so a table
  and a user's run score images with the same network);
- :class:`InceptionFeaturizer`: the FID Inception-v3 (2,048 pool features, 1,008
  logits) read from a local weights file, for the paper presets. It needs
  ``torch-fidelity`` and the file ``pt_inception-2015-12-05-6726825d.pth`` (torch-fidelity's
  port of the TF FID Inception, the weights torchmetrics' FID uses); nothing downloads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["FeatureNet", "train_feature_net", "torch_threads", "state_digest", "NetRecipe", "NetFeaturizer",
           "InceptionFeaturizer", "INCEPTION_WEIGHTS_FILE"]


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads, restoring the caller's count after: the
    reduction order of a float sum can depend on the thread count, so a network that
    scores shipped tables is trained at one thread, whatever the caller runs at."""
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def state_digest(state: dict) -> str:
    """Short hash of a state dict's names, shapes, dtypes and bytes: a network's identity."""
    h = hashlib.sha1()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:12]


class FeatureNet(nn.Module):
    """A two-layer MLP classifier; ``features`` is its penultimate layer. ``num_features``
    lets torchmetrics take it as FID's ``feature``; ``logits=True`` makes forward return
    class logits (Inception Score)."""

    def __init__(self, dim: int = 64, n_classes: int = 10, hidden: int = 128, num_features: int = 64):
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_features), nn.ReLU()
        )
        self.head = nn.Linear(num_features, n_classes)
        self.logits = False  # torchmetrics calls forward(x); InceptionScore needs logits

    def features(self, x):
        return self.body(x.reshape(len(x), -1).float())

    def classify(self, x):
        return self.head(self.features(x))

    def predict(self, images) -> np.ndarray:
        """The most likely class of each image (N, ...) in [-1, 1], as a numpy array: what
        a task's per-sample scores read off its classifiers."""
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(images), dtype=torch.float32).reshape(len(images), -1)
            return self.classify(x).argmax(1).numpy()

    def forward(self, x):
        return self.classify(x) if self.logits else self.features(x)


def train_feature_net(x: torch.Tensor, y: torch.Tensor, n_classes: int, epochs: int = 300,
                      noise: float = 0.1, seed: int = 0) -> FeatureNet:
    """Full-batch Adam on the real data with small Gaussian input noise (robust features).
    Deterministic: seeded, and trained at one torch thread whatever the caller's count."""
    with torch_threads(1):
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        net = FeatureNet(dim=x.shape[1], n_classes=n_classes)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(epochs):
            xb = x + noise * torch.randn(x.shape, generator=g)
            loss = nn.functional.cross_entropy(net.classify(xb), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


@dataclass(frozen=True, eq=False)
class NetRecipe:
    """How one of a task's scoring networks is made: a :class:`FeatureNet` trained by
    :func:`train_feature_net` (seeded, one thread) on ``images`` with ``labels``.

    ``shipped``: its weights as package data (used whenever they fit this input size and
    class count), so every machine scores a shipped table with the very same network;
    without them the network is trained on first use and cached under ``cache``."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    n_classes: int
    shipped: Path | None = None
    cache: Path | None = None

    @property
    def dim(self) -> int:
        return int(np.prod(self.images.shape[1:]))

    def train(self):
        """Train the network from scratch (what ``surrogateshap scoring-nets`` ships)."""
        x = torch.as_tensor(self.images, dtype=torch.float32).reshape(len(self.images), -1)
        return train_feature_net(x, torch.as_tensor(self.labels, dtype=torch.long), n_classes=self.n_classes)

    def _fits(self, state) -> bool:
        return state["body.0.weight"].shape[1] == self.dim and state["head.weight"].shape[0] == self.n_classes

    def load(self):
        """Shipped weights if present and fitting, else cached ones, else train and cache."""
        from surrogateshap._files import atomic_write

        for path in (self.shipped, self.cache):
            if path is not None and Path(path).exists():
                state = torch.load(path, map_location="cpu", weights_only=True)
                if self._fits(state):
                    net = FeatureNet(dim=self.dim, n_classes=self.n_classes)
                    net.load_state_dict(state)
                    return net.eval()
        net = self.train()
        if self.cache is not None:
            with atomic_write(self.cache, "wb") as f:
                torch.save(net.state_dict(), f)
        return net


class NetFeaturizer:
    """A :class:`FeatureNet` on flattened images; ``net`` is what torchmetrics takes."""

    def __init__(self, net):
        self.net = net.eval()

    @classmethod
    def from_recipe(cls, recipe: NetRecipe) -> "NetFeaturizer":
        return cls(recipe.load())

    def digest(self) -> str:
        return state_digest(self.net.state_dict())

    def features(self, images):
        with torch.no_grad():
            x = torch.as_tensor(images, dtype=torch.float32).reshape(len(images), -1).cpu()
            f = self.net.features(x)
            return f.double().numpy(), self.net.head(f).double().numpy()


class InceptionFeaturizer:
    """FID Inception-v3 from a local weights file (no download). Images in [-1, 1],
    1 or 3 channels, any size (torchmetrics resizes to 299)."""

    def __init__(self, weights_path: str | os.PathLike, device="cpu", batch: int = 256):
        path = Path(weights_path)
        if not path.exists():
            raise FileNotFoundError(
                f"Inception weights {path} not found: the paper preset reads the FID Inception-v3 "
                f"({INCEPTION_WEIGHTS_FILE}, torch-fidelity's release) from a local file named "
                "by the config's inception_weights")
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
            NoTrainInceptionV3("inception-v3-compat", ["2048"], str(path))  # checks torch-fidelity
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(f"the Inception featurizer needs torch-fidelity: {e}") from e
        self.net = NoTrainInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], str(path)).to(device)
        self.device, self.batch, self.path = device, batch, path

    def digest(self) -> str:
        """Hash of the weights file (read once): the scoring network's identity."""
        h = hashlib.sha1()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:12]

    def features(self, images):
        x = torch.as_tensor(images, dtype=torch.float32)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        feats, logits = [], []
        with torch.no_grad():
            for i in range(0, len(x), self.batch):
                u8 = ((x[i : i + self.batch] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
                f, lg = self.net(u8.to(self.device))
                feats.append(f.double().cpu())
                logits.append(lg.double().cpu())
        return torch.cat(feats).numpy(), torch.cat(logits).numpy()
