"""Featurizers of the image utilities: images -> (features, class logits).

FID needs features, Inception Score class logits, coverage features again. Two kinds:

- :class:`NetFeaturizer`: the project's own small classifier (:class:`FeatureNet`)
  trained on the task's real images; shipped weights when they exist, else trained once
  and cached (so a table and a user's run score images with the same network);
- :class:`InceptionFeaturizer`: the FID Inception-v3 (2,048 pool features, 1,008
  logits) read from a local weights file, for the paper presets. It needs
  ``torch-fidelity`` and the file ``pt_inception-2015-12-05-6726825d.pth`` (torch-fidelity's
  port of the TF FID Inception, the weights torchmetrics' FID uses); nothing downloads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["NetFeaturizer", "InceptionFeaturizer", "INCEPTION_WEIGHTS_FILE"]

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


class NetFeaturizer:
    """A :class:`FeatureNet` on flattened images; ``net`` is what torchmetrics takes."""

    def __init__(self, net):
        self.net = net.eval()

    @classmethod
    def load_or_train(cls, shipped: Path | None, cache: Path, images, labels, n_classes: int):
        """Shipped weights if present (and of this input size), else weights cached at
        ``cache``, else train on (images, labels) and cache them."""
        import torch

        from surrogateshap.tasks.features import FeatureNet, train_feature_net

        dim = int(np.prod(images.shape[1:]))
        for path in (shipped, cache):
            if path is not None and Path(path).exists():
                state = torch.load(path, map_location="cpu", weights_only=True)
                if state["body.0.weight"].shape[1] == dim and state["head.weight"].shape[0] == n_classes:
                    net = FeatureNet(dim=dim, n_classes=n_classes)
                    net.load_state_dict(state)
                    return cls(net)
        x = torch.as_tensor(images, dtype=torch.float32).reshape(len(images), -1)
        net = train_feature_net(x, torch.as_tensor(labels, dtype=torch.long), n_classes=n_classes)
        cache = Path(cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save(net.state_dict(), tmp)
        tmp.replace(cache)
        return cls(net)

    def features(self, images):
        import torch

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
        self.device, self.batch = device, batch

    def features(self, images):
        import torch

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
