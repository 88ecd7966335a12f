"""Feature extractors and classifiers the project trains itself (no downloaded weights).

FID and Inception Score need a feature network and a classifier. The paper uses
Inception-v3; offline we train a small classifier on the task's own real data and use
its penultimate layer as features. ``FeatureNet`` returns features by default and
logits with ``logits=True``, and carries ``num_features`` so torchmetrics accepts it.
"""

from __future__ import annotations

import contextlib
import hashlib

import torch
from torch import nn

__all__ = ["FeatureNet", "train_feature_net", "torch_threads", "state_digest"]


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
