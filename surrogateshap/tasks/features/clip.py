"""The LAION aesthetic score: a linear head on L2-normalised CLIP ViT-L/14 image
embeddings, everything read from local files (nothing downloads).

- :class:`CLIPImageEmbedder`: images (N, 3, H, W) in [0, 1] -> (N, d) image embeddings.
  Two loaders: ``from_transformers(folder)`` (a local copy of a transformers CLIP
  checkpoint, e.g. openai/clip-vit-large-patch14; the default, because it runs beside
  the CPU build of torch) and ``from_open_clip(model, file)`` (open_clip's
  ``create_model_and_transforms(model, pretrained=<file>)``; open_clip imports
  torchvision, which PyPI only builds against CUDA torch, so this loader is for GPU
  environments). Both give OpenAI ViT-L/14's 768-d embeddings for its weights.
- :class:`AestheticHead`: the predictor read from its ``.pth``: LAION's
  ``sa_0_4_vit_l_14_linear.pth`` (one Linear(768, 1), keys ``weight``/``bias``) or the
  improved predictor's stack of linear layers (keys ``layers.<i>.weight``; its MLP has
  no activations, so the layers are applied in order).

Report the mean and the 0.5 / 0.75 / 0.9 quantiles of the per-image scores
(:mod:`surrogateshap.tasks.features.t2i`).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

__all__ = ["CLIPImageEmbedder", "AestheticHead", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _missing(path: Path, what: str, expect: str):
    from surrogateshap.tasks.data.images import DataMissingError

    return DataMissingError(f"{what} {path} not found: {expect} (nothing is downloaded; put a local copy there)")


class CLIPImageEmbedder:
    """A CLIP image tower with CLIP's preprocessing: resize the short side to the
    model's input size (bicubic, antialiased), centre crop, normalise.

    ``encode``: preprocessed (N, 3, S, S) -> (N, d) embeddings; any module or function
    (tests inject a tiny one).
    """

    def __init__(self, encode, image_size: int = 224, mean=CLIP_MEAN, std=CLIP_STD, device="cpu",
                 batch: int = 64, dtype=None):
        import torch

        self.encode, self.image_size, self.device, self.batch = encode, int(image_size), device, int(batch)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.dtype = dtype or torch.float32

    @classmethod
    def from_transformers(cls, path, device="cpu", dtype=None, batch: int = 64) -> "CLIPImageEmbedder":
        """A local transformers CLIP folder (``config.json`` + weights; a full CLIPModel or
        a CLIPVisionModelWithProjection): embeddings = projected image embeddings."""
        import torch
        from transformers import CLIPVisionModelWithProjection

        path = Path(path)
        if not (path / "config.json").exists():
            raise _missing(path, "CLIP folder", "a transformers CLIP checkpoint folder (config.json, "
                           "model.safetensors; e.g. openai/clip-vit-large-patch14)")
        dtype = dtype or torch.float32
        model = CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True, dtype=dtype)
        model = model.eval().requires_grad_(False).to(device)
        mean, std = CLIP_MEAN, CLIP_STD
        pp = path / "preprocessor_config.json"
        if pp.exists():
            cfg = json.loads(pp.read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
        return cls(lambda x: model(pixel_values=x).image_embeds, image_size=model.config.image_size,
                   mean=mean, std=std, device=device, batch=batch, dtype=dtype)

    @classmethod
    def from_open_clip(cls, model_name: str, pretrained, device="cpu", batch: int = 64) -> "CLIPImageEmbedder":
        """open_clip's ``create_model_and_transforms(model_name, pretrained=<local file>)``."""
        path = Path(pretrained)
        if not path.exists():
            raise _missing(path, "open_clip weights", f"the local {model_name} checkpoint file")
        try:
            import open_clip
        except ImportError as e:  # torchvision missing or built for another torch
            raise ModuleNotFoundError(
                f"open_clip could not be imported ({e}); it needs open_clip_torch and a torchvision built for "
                "this torch. Use CLIPImageEmbedder.from_transformers with a local CLIP folder instead") from e
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path))
        model = model.eval().requires_grad_(False).to(device)
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        mean = getattr(model.visual, "image_mean", None) or CLIP_MEAN
        std = getattr(model.visual, "image_std", None) or CLIP_STD
        return cls(model.encode_image, image_size=int(size), mean=mean, std=std, device=device, batch=batch)

    def preprocess(self, images):
        import torch
        import torch.nn.functional as F

        x = torch.as_tensor(images, dtype=torch.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"CLIP takes RGB images (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        s = self.image_size
        scale = s / min(h, w)
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
        top, left = (nh - s) // 2, (nw - s) // 2
        x = x[..., top : top + s, left : left + s].clamp(0, 1)
        return (x - self.mean) / self.std

    def __call__(self, images):
        """(N, d) float32 embeddings (not normalised; the featurizer normalises)."""
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch):
                x = self.preprocess(images[i : i + self.batch]).to(self.device, self.dtype)
                out.append(torch.as_tensor(self.encode(x)).float().cpu())
        return torch.cat(out)


class AestheticHead:
    """The LAION aesthetic predictor on normalised CLIP embeddings: (N, d) -> (N,)."""

    def __init__(self, layers):
        self.layers = [(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)) for w, b in layers]
        for (w1, _), (w2, _) in zip(self.layers, self.layers[1:]):
            if w2.shape[1] != w1.shape[0]:
                raise ValueError(f"aesthetic head layers do not chain: {w1.shape} then {w2.shape}")
        if self.layers[-1][0].shape[0] != 1:
            raise ValueError(f"the aesthetic head must end in one output, got {self.layers[-1][0].shape[0]}")

    @property
    def dim(self) -> int:
        return self.layers[0][0].shape[1]

    @classmethod
    def from_file(cls, path) -> "AestheticHead":
        import torch

        from surrogateshap.tasks.data.images import DataMissingError

        path = Path(path)
        if not path.exists():
            raise _missing(path, "aesthetic head", "LAION's aesthetic predictor weights "
                           "(sa_0_4_vit_l_14_linear.pth: Linear(768, 1) on CLIP ViT-L/14 embeddings)")
        try:
            return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, KeyError,
                TypeError, AttributeError) as e:  # what torch raises for a folder, text, a cut-short file
            said = (str(e).strip().splitlines() or [""])[0][:160]
            raise DataMissingError(
                f"aesthetic head {path} is not a weights file of linear layers ({type(e).__name__}: {said}); "
                "expected LAION's sa_0_4_vit_l_14_linear.pth or the improved predictor's .pth") from e

    @classmethod
    def from_state_dict(cls, state: dict) -> "AestheticHead":
        if not isinstance(state, dict):
            raise TypeError(f"not an aesthetic head state dict: a {type(state).__name__}")
        state = {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in state.items()}
        if "weight" in state:
            return cls([(state["weight"], state.get("bias", np.zeros(len(state["weight"]))))])
        weights = sorted((k for k in state if k.endswith(".weight") and state[k].ndim == 2),
                         key=lambda k: [int(p) if p.isdigit() else p for p in k.split(".")])
        if not weights:
            raise ValueError(f"not an aesthetic head state dict (no linear weights): keys {sorted(state)[:6]}")
        return cls([(state[k], state.get(k[: -len("weight")] + "bias", np.zeros(len(state[k]))))
                    for k in weights])

    def __call__(self, embeddings) -> np.ndarray:
        x = np.asarray(embeddings.detach().cpu() if hasattr(embeddings, "detach") else embeddings, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"the aesthetic head takes (N, {self.dim}) embeddings, got {x.shape}")
        for w, b in self.layers:
            x = x @ w.T + b
        return x[:, 0]
