"""LPIPS-AlexNet (Zhang et al. 2018) from local weights.

Its linear heads are the ones torchmetrics ships (``lpips_models/alex.pth`` inside the
torchmetrics package); the AlexNet backbone is read from a local file (torchvision's
ImageNet ``alexnet-owt-7be5be79.pth``). torchmetrics' own LPIPS class is not used
because it builds its backbone through torchvision, which downloads the weights and,
from PyPI, only exists for the CUDA build of torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["LPIPS"]


def _torchmetrics_lpips_heads() -> Path:
    import torchmetrics

    return Path(torchmetrics.__file__).parent / "functional" / "image" / "lpips_models" / "alex.pth"


def _alexnet_features():
    """torchvision's AlexNet ``features`` layout (indices match its state dict)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )


def _make_lpips_module():
    import torch
    from torch import nn

    class _LPIPSAlex(nn.Module):
        taps = (1, 4, 7, 9, 11)  # the five ReLU outputs LPIPS compares
        channels = (64, 192, 384, 256, 256)

        def __init__(self):
            super().__init__()
            self.features = _alexnet_features()
            self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.channels)
            self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

        def _taps(self, x):
            out = []
            for i, layer in enumerate(self.features):
                x = layer(x)
                if i in self.taps:
                    out.append(x / torch.sqrt(1e-8 + (x * x).sum(1, keepdim=True)))
                if i == self.taps[-1]:
                    break
            return out

        def forward(self, a, b):
            fa, fb = self._taps((a - self.shift) / self.scale), self._taps((b - self.shift) / self.scale)
            return sum(lin((x - y) ** 2).mean((2, 3)) for lin, x, y in zip(self.lins, fa, fb))[:, 0]

    return _LPIPSAlex()


class LPIPS:
    """LPIPS-AlexNet distance between image pairs in [0, 1] (lower = more alike).

    ``backbone``: path of a local AlexNet state dict (torchvision's
    ``alexnet-owt-7be5be79.pth``; keys ``features.*``, classifier keys ignored), or a
    state dict, or None for random weights (mechanics tests only: not LPIPS).
    ``heads``: the five linear heads; default the file torchmetrics ships. Images
    smaller than ``min_size`` (64) are upsampled (AlexNet's strides need it).
    """

    def __init__(self, backbone=None, heads=None, device="cpu", min_size: int = 64, batch: int = 64):
        import torch

        self.net = _make_lpips_module()
        if backbone is not None:
            if isinstance(backbone, (str, os.PathLike)):
                path = Path(backbone)
                if not path.exists():
                    raise FileNotFoundError(
                        f"LPIPS backbone {path} not found: LPIPS reads the AlexNet ImageNet weights from a "
                        "local file (torchvision's alexnet-owt-7be5be79.pth, keys features.*)")
                backbone = torch.load(path, map_location="cpu", weights_only=True)
            feats = {k.removeprefix("features."): v for k, v in backbone.items() if k.startswith("features.")}
            if not feats:
                raise ValueError("the LPIPS backbone state dict has no 'features.*' keys (an AlexNet's)")
            self.net.features.load_state_dict(feats)
        heads = _torchmetrics_lpips_heads() if heads is None else heads
        if isinstance(heads, (str, os.PathLike)):
            if not Path(heads).exists():
                raise FileNotFoundError(f"LPIPS linear heads {heads} not found (torchmetrics ships them as "
                                        "functional/image/lpips_models/alex.pth)")
            heads = torch.load(heads, map_location="cpu", weights_only=True)
        # torchmetrics' keys: lin{k}.model.1.weight (index 1: after a dropout layer)
        for k, lin in enumerate(self.net.lins):
            key = next((n for n in heads if n.startswith(f"lin{k}.") and n.endswith("weight")), None)
            if key is None:
                raise ValueError(f"LPIPS heads lack lin{k}.*weight; keys: {sorted(heads)[:6]}")
            lin.weight.data.copy_(heads[key])
        self.net = self.net.eval().requires_grad_(False).to(device)
        self.device, self.min_size, self.batch = device, int(min_size), int(batch)

    def __call__(self, a, b) -> np.ndarray:
        """(N,) distances of pairs a[i], b[i]; tensors (N, 3, H, W) in [0, 1]."""
        import torch
        import torch.nn.functional as F

        a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
            raise ValueError(f"LPIPS needs two (N, 3, H, W) batches of one shape, got {tuple(a.shape)} and "
                             f"{tuple(b.shape)}")
        out = []
        with torch.no_grad():
            for i in range(0, len(a), self.batch):
                x, y = a[i : i + self.batch] * 2 - 1, b[i : i + self.batch] * 2 - 1
                if min(x.shape[-2:]) < self.min_size:
                    size = (max(self.min_size, x.shape[-2]), max(self.min_size, x.shape[-1]))
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
                out.append(self.net(x.to(self.device), y.to(self.device)).double().cpu())
        return torch.cat(out).numpy()
