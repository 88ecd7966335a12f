"""Text-to-image attribution at paper scale: a pretrained pipeline, LoRA fine-tuning on a
coalition's items, sampling, and the two games.

The paper's T2I tasks take a pretrained model (Stable Diffusion for ArtBench, FLUX.1
for Fashion-Product) as trained on everything, and the model "trained on coalition S"
is that base model plus a LoRA adapter fine-tuned on S's items. So:

- items: a dataset is a :class:`T2IDataset` of :class:`T2IItem` (image, contributor,
  prompt); a task's loader returns one. A *unit* is a distinct prompt: the proxy game
  mixes per-unit sample banks in proportion to a coalition's items
  (:meth:`T2IDataset.units`).
- :class:`T2IFamily`: a diffusers pipeline ("sd": StableDiffusionPipeline, "flux":
  FluxPipeline) loaded from a local folder (``from_pretrained``, nothing downloads), or
  built tiny and random from configs (``tiny``: tests, ci). It encodes images and
  prompts, computes the training loss (SD: epsilon / v MSE under DDPMScheduler; FLUX:
  rectified flow, target noise - x0), holds one peft LoRA adapter, and samples.
- :func:`fine_tune_lora`: a fresh seeded LoRA (rank r, alpha) on the denoiser's
  attention projections, trained on the items with AdamW; base weights frozen. Returns
  a :class:`LoRAAdapter` (the adapter's state dict, on the CPU).
- :class:`T2ITask`: a :class:`~surrogateshap.tasks.base.DiffusionTask` over a
  T2IDataset. Retraining game: v(S) = utilities of ``n_samples`` images of base + LoRA(S),
  prompts in proportion to S's units. Proxy game (:class:`T2IProxyGame`): the full-data
  LoRA's per-unit sample bank (:mod:`surrogateshap.tasks.sample_bank`), mixed with S's
  unit weights; or re-generated per coalition (the paper's protocol).

v(empty): S has no items, so no adapter: the base model itself, sampled with the full
data's prompts (unit weights of all items). Both games use this one definition; it
shifts every Shapley value by the same amount.

Images are float tensors (N, 3, H, W) in [0, 1] throughout (the VAE sees [-1, 1]).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from surrogateshap.game import Game, stable_hash
from surrogateshap.tasks.base import DiffusionTask, allocate_counts, coalition_seed
from surrogateshap.tasks.sample_bank import BankFeatures, SampleBank, image_seed
from surrogateshap.tasks.t2i_metrics import (T2I_UTILITIES, FeatureSet, T2IFeaturizer, load_attribute_classifier,
                                             load_images, t2i_utility)

__all__ = [
    "T2IItem", "T2IDataset", "load_images", "T2IFamily", "LoRASpec", "LoRAAdapter", "fine_tune_lora",
    "T2IConfig", "PaperT2IConfig", "T2ITask", "T2IProxyGame", "KINDS", "PIPELINE_PARTS", "paths_from_env",
]

KINDS = ("sd", "flux")
#: the subfolders a local diffusers folder of each kind must hold (beside model_index.json)
PIPELINE_PARTS = {
    "sd": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    "flux": ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"),
}
#: LoRA targets: the attention projections (diffusers' LoRA training scripts' choice)
DEFAULT_TARGETS = {
    "sd": ("to_q", "to_k", "to_v", "to_out.0"),
    "flux": ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"),
}
DEFAULT_GUIDANCE = {"sd": 7.5, "flux": 3.5}
DEFAULT_SAMPLE_STEPS = {"sd": 50, "flux": 28}
_ADAPTER = "surrogateshap"


# --- items -------------------------------------------------------------------------
class T2IItem(NamedTuple):
    """One training item: an image (a file path, a PIL image, a uint8 (H, W[, 3]) array
    of 0..255, or a float (3, H, W) array in [0, 1]), its contributor's index and its
    prompt."""

    image: object
    contributor: int
    prompt: str


@dataclass(frozen=True)
class T2IDataset:
    """A text-to-image dataset: ``players`` (contributor names) and ``items``."""

    name: str
    players: tuple[str, ...]
    items: tuple[T2IItem, ...]

    def __post_init__(self):
        items = tuple(T2IItem(*it) for it in self.items)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "players", tuple(str(p) for p in self.players))
        if not items:
            raise ValueError(f"{self.name}: a dataset needs items")
        n = len(self.players)
        for i, it in enumerate(items):
            if not isinstance(it.contributor, (int, np.integer)) or not 0 <= it.contributor < n:
                raise ValueError(f"{self.name}: item {i} has contributor {it.contributor!r}, not an index "
                                 f"in 0..{n - 1}")
            if not isinstance(it.prompt, str) or not it.prompt.strip():
                raise ValueError(f"{self.name}: item {i} has no prompt (got {it.prompt!r})")
        empty = sorted(set(range(n)) - set(self.item_contributor.tolist()))
        if empty:
            raise ValueError(f"{self.name}: players without items: {[self.players[i] for i in empty[:5]]}")

    @property
    def item_contributor(self) -> np.ndarray:
        return np.array([it.contributor for it in self.items], dtype=np.int64)

    @property
    def prompts(self) -> list[str]:
        return [it.prompt for it in self.items]

    def units(self) -> tuple[tuple[str, ...], np.ndarray]:
        """(distinct prompts in order of first appearance, (n_items,) unit of each item)."""
        index: dict[str, int] = {}
        item_unit = np.array([index.setdefault(p, len(index)) for p in self.prompts], dtype=np.int64)
        return tuple(index), item_unit


# --- LoRA --------------------------------------------------------------------------
@dataclass(frozen=True)
class LoRASpec:
    """The adapter's shape: rank, alpha (scale alpha / rank) and target module names."""

    rank: int
    alpha: float
    target_modules: tuple[str, ...]

    def config(self):
        from peft import LoraConfig

        return LoraConfig(r=int(self.rank), lora_alpha=float(self.alpha), init_lora_weights=True,
                          target_modules=list(self.target_modules))


@dataclass
class LoRAAdapter:
    """A trained LoRA: peft's adapter state dict (CPU, float32), its spec, and how it
    was trained (``info``: steps, lr, seed, number of items, losses)."""

    state: dict
    spec: LoRASpec
    kind: str
    info: dict = field(default_factory=dict)

    def digest(self) -> str:
        import hashlib

        h = hashlib.sha1()
        for k in sorted(self.state):
            h.update(k.encode())
            h.update(self.state[k].numpy().tobytes())
        return h.hexdigest()[:12]

    def save(self, path):
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"state": self.state, "spec": dataclasses.asdict(self.spec), "kind": self.kind,
                    "info": {k: v for k, v in self.info.items() if k != "losses"}}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "LoRAAdapter":
        import torch

        d = torch.load(path, map_location="cpu", weights_only=True)
        spec = d["spec"]
        return cls(d["state"], LoRASpec(int(spec["rank"]), float(spec["alpha"]), tuple(spec["target_modules"])),
                   d["kind"], dict(d["info"]))


# --- the pipeline family -------------------------------------------------------------
def _dtype(name):
    import torch

    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if isinstance(name, torch.dtype):
        return name
    if name not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, got {name!r}")
    return table[name]


def _device(name):
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _tiny_clip_tokenizer(max_length: int):
    """A byte-level CLIP tokenizer with no merges (514 tokens), built offline."""
    import json

    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    with tempfile.TemporaryDirectory() as d:
        Path(d, "vocab.json").write_text(json.dumps(vocab))
        Path(d, "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(Path(d, "vocab.json")), str(Path(d, "merges.txt")), model_max_length=max_length)


def _tiny_t5_tokenizer(max_length: int):
    """A character-level T5 (unigram) tokenizer, built offline."""
    import string

    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in string.ascii_letters + string.digits + string.punctuation]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


class T2IFamily:
    """A diffusers text-to-image pipeline with one LoRA slot on its denoiser.

    ``kind`` "sd" (``pipe.unet``) or "flux" (``pipe.transformer``); ``resolution`` the
    square image size of training and sampling. Everything but the LoRA is frozen.
    """

    def __init__(self, pipeline, kind: str, resolution: int, guidance: float | None = None,
                 sample_steps: int | None = None, max_sequence_length: int | None = None):
        from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.pipe, self.kind, self.resolution = pipeline, kind, int(resolution)
        mult = pipeline.vae_scale_factor * (2 if kind == "flux" else 1)
        if self.resolution % mult:
            raise ValueError(f"resolution {resolution} must be a multiple of {mult} for this {kind} pipeline")
        self.guidance = DEFAULT_GUIDANCE[kind] if guidance is None else float(guidance)
        self.sample_steps = DEFAULT_SAMPLE_STEPS[kind] if sample_steps is None else int(sample_steps)
        self.max_sequence_length = max_sequence_length or (512 if kind == "flux" else None)
        cfg = pipeline.scheduler.config
        self.train_scheduler = (DDPMScheduler.from_config(cfg) if kind == "sd"
                                else FlowMatchEulerDiscreteScheduler.from_config(cfg))
        for name in ("vae", "text_encoder", "text_encoder_2", "unet", "transformer"):
            m = getattr(pipeline, name, None)
            if m is not None:
                m.requires_grad_(False).eval()
        pipeline.set_progress_bar_config(disable=True)
        self._spec: LoRASpec | None = None

    # --- construction ---------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, kind: str, path, dtype="float32", device="auto", resolution: int | None = None,
                        sampler: str | None = None, **kw) -> "T2IFamily":
        """A local diffusers folder (``save_pretrained`` layout). SD samples with DDIM
        (eta 0; ``sampler`` None or "ddim") or, with ``sampler="folder"``, the folder's
        scheduler; FLUX with its flow-matching Euler scheduler."""
        if sampler not in (None, "ddim", "folder"):
            raise ValueError(f"sampler must be 'ddim' or 'folder', got {sampler!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        path = Path(path)
        missing = [p for p in ("model_index.json",) + PIPELINE_PARTS[kind] if not (path / p).exists()]
        if missing:
            from surrogateshap.tasks.datasets import DataMissingError

            raise DataMissingError(
                f"no local {kind} pipeline at {path}: it lacks {', '.join(missing)} (a diffusers folder needs "
                f"model_index.json and the subfolders {', '.join(PIPELINE_PARTS[kind])}; nothing is downloaded)")
        torch_dtype = _dtype(dtype)
        if kind == "sd":
            from diffusers import DDIMScheduler, StableDiffusionPipeline

            pipe = StableDiffusionPipeline.from_pretrained(path, torch_dtype=torch_dtype, local_files_only=True,
                                                           safety_checker=None, requires_safety_checker=False)
            if sampler != "folder":
                pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
            if resolution is None:
                resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
        else:
            from diffusers import FluxPipeline

            pipe = FluxPipeline.from_pretrained(path, torch_dtype=torch_dtype, local_files_only=True)
            if resolution is None:
                resolution = pipe.default_sample_size * pipe.vae_scale_factor
        pipe.to(_device(device))
        return cls(pipe, kind, resolution, **kw)

    @classmethod
    def tiny(cls, kind: str = "sd", seed: int = 0, resolution: int = 16, device="cpu", **kw) -> "T2IFamily":
        """Tiny random components from configs (diffusers' own test sizes): mechanics only."""
        import torch
        from transformers import CLIPTextConfig, CLIPTextModel

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        from diffusers import AutoencoderKL

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tok = _tiny_clip_tokenizer(77)
            clip_cfg = CLIPTextConfig(bos_token_id=512, eos_token_id=513, pad_token_id=513, vocab_size=514,
                                      hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                      num_hidden_layers=2, max_position_embeddings=77, projection_dim=32)
            text_encoder = CLIPTextModel(clip_cfg)
            if kind == "sd":
                from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

                unet = UNet2DConditionModel(
                    block_out_channels=(8, 16), layers_per_block=1, sample_size=resolution // 2, in_channels=4,
                    out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                    norm_num_groups=4, attention_head_dim=4)
                vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                                    down_block_types=("DownEncoderBlock2D",) * 2,
                                    up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
                                    sample_size=resolution)
                sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                      clip_sample=False, set_alpha_to_one=False, steps_offset=1)
                pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet,
                                               scheduler=sched, safety_checker=None, feature_extractor=None,
                                               requires_safety_checker=False)
            else:
                from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
                from transformers import T5Config, T5EncoderModel

                tok2 = _tiny_t5_tokenizer(64)
                t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                             num_heads=4, pad_token_id=0, eos_token_id=1,
                                             decoder_start_token_id=0))
                transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                                     attention_head_dim=16, num_attention_heads=2,
                                                     joint_attention_dim=32, pooled_projection_dim=32,
                                                     axes_dims_rope=[4, 4, 8])
                vae = AutoencoderKL(sample_size=resolution, in_channels=3, out_channels=3, block_out_channels=(4,),
                                    layers_per_block=1, latent_channels=1, norm_num_groups=1, use_quant_conv=False,
                                    use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
                pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                                    tokenizer=tok, text_encoder_2=t5, tokenizer_2=tok2, transformer=transformer)
                kw.setdefault("max_sequence_length", 64)
        pipe.to(torch.device(device))
        kw.setdefault("sample_steps", 2)
        return cls(pipe, kind, resolution, **kw)

    # --- parts ------------------------------------------------------------------------
    @property
    def denoiser(self):
        return self.pipe.unet if self.kind == "sd" else self.pipe.transformer

    @property
    def device(self):
        return next(self.denoiser.parameters()).device

    @property
    def dtype(self):
        return self.pipe.vae.dtype

    def base_state(self) -> dict:
        """The denoiser's non-LoRA tensors (CPU copies): to check they stay frozen."""
        return {k.replace(".base_layer", ""): v.detach().cpu().clone() for k, v in self.denoiser.state_dict().items()
                if "lora_" not in k}

    # --- encoders ----------------------------------------------------------------------
    def encode_images(self, images, seeds: Sequence[int], batch: int = 16):
        """Images (N, 3, H, W) in [0, 1] -> scaled VAE latents (CPU), one sampled latent per
        image from its own seed."""
        import torch

        vae = self.pipe.vae
        out = []
        with torch.no_grad():
            for i in range(0, len(images), batch):
                x = (torch.as_tensor(images[i : i + batch]) * 2 - 1).to(self.device, vae.dtype)
                gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i : i + batch]]
                dist = vae.encode(x).latent_dist
                noise = torch.stack([torch.randn(dist.mean.shape[1:], generator=g) for g in gens])
                lat = dist.mean + dist.std * noise.to(dist.mean.device, dist.mean.dtype)
                shift = getattr(vae.config, "shift_factor", None) or 0.0
                out.append(((lat - shift) * vae.config.scaling_factor).float().cpu())
        return torch.cat(out)

    def encode_items(self, images: Sequence, seeds: Sequence[int], batch: int = 16):
        """Raw item images (paths, arrays) -> latents, loaded and encoded a batch at a time."""
        import torch

        return torch.cat([self.encode_images(load_images(images[i : i + batch], self.resolution), seeds[i : i + batch])
                          for i in range(0, len(images), batch)])

    def encode_prompts(self, prompts: Sequence[str]) -> dict:
        """The denoiser's text conditioning of a batch of prompts (no gradient)."""
        import torch

        with torch.no_grad():
            if self.kind == "sd":
                emb, _ = self.pipe.encode_prompt(list(prompts), self.device, 1, False)
                return {"encoder_hidden_states": emb}
            emb, pooled, text_ids = self.pipe.encode_prompt(prompt=list(prompts), prompt_2=None, device=self.device,
                                                            max_sequence_length=self.max_sequence_length)
            return {"encoder_hidden_states": emb, "pooled_projections": pooled, "txt_ids": text_ids}

    # --- training objective ------------------------------------------------------------
    def loss(self, latents, cond: dict, generator):
        """The denoising loss of a batch of latents (on the family's device) with noise
        and timesteps drawn from ``generator`` (a CPU torch.Generator)."""
        import torch
        import torch.nn.functional as F

        b = len(latents)
        dev, dt = latents.device, latents.dtype
        noise = torch.randn(latents.shape, generator=generator).to(dev, dt)
        sch = self.train_scheduler
        T = sch.config.num_train_timesteps
        if self.kind == "sd":
            t = torch.randint(0, T, (b,), generator=generator).to(dev)
            noisy = sch.add_noise(latents, noise, t)
            pred = self.pipe.unet(noisy, t, encoder_hidden_states=cond["encoder_hidden_states"]).sample
            kind = sch.config.prediction_type
            target = noise if kind == "epsilon" else sch.get_velocity(latents, noise, t)
            return F.mse_loss(pred.float(), target.float())
        from diffusers import FluxPipeline

        idx = (torch.rand(b, generator=generator) * len(sch.timesteps)).long().clamp(max=len(sch.timesteps) - 1)
        sigma = sch.sigmas[idx].to(dev, dt).view(b, 1, 1, 1)
        timestep = sch.timesteps[idx].to(dev, dt)
        noisy = (1 - sigma) * latents + sigma * noise
        _, c, h, w = latents.shape
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, dev, dt)
        tr = self.pipe.transformer
        guidance = torch.full((b,), self.guidance, device=dev, dtype=dt) if tr.config.guidance_embeds else None
        pred = tr(hidden_states=packed, timestep=timestep / 1000, guidance=guidance,
                  pooled_projections=cond["pooled_projections"], encoder_hidden_states=cond["encoder_hidden_states"],
                  txt_ids=cond["txt_ids"], img_ids=img_ids, return_dict=False)[0]
        vsf = self.pipe.vae_scale_factor
        pred = FluxPipeline._unpack_latents(pred, height=h * vsf, width=w * vsf, vae_scale_factor=vsf)
        return F.mse_loss(pred.float(), (noise - latents).float())

    # --- the LoRA slot -----------------------------------------------------------------
    def _ensure_adapter(self, spec: LoRASpec):
        den = self.denoiser
        if self._spec != spec:
            if self._spec is not None:
                den.delete_adapters(_ADAPTER)
            den.add_adapter(spec.config(), adapter_name=_ADAPTER)
            self._spec = spec
        den.enable_adapters()

    def _lora_params(self):
        return [p for n, p in self.denoiser.named_parameters() if "lora_" in n]

    def reset_adapter(self, spec: LoRASpec, seed: int):
        """Fresh LoRA weights (A: peft's Kaiming init from ``seed``, B: zeros) in float32,
        the only trainable tensors: the model before any fine-tuning."""
        import torch
        from peft.tuners.lora import LoraLayer

        self._ensure_adapter(spec)
        dev = self.device
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(int(seed))
            for m in self.denoiser.modules():
                if isinstance(m, LoraLayer) and _ADAPTER in m.lora_A:
                    m.reset_lora_parameters(_ADAPTER, True)
        for p in self.denoiser.parameters():
            p.requires_grad_(False)
        for p in self._lora_params():
            p.data = p.data.float()
            p.requires_grad_(True)

    def adapter_state(self) -> dict:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.denoiser, adapter_name=_ADAPTER)
        return {k: v.detach().float().cpu().clone() for k, v in state.items()}

    def use_adapter(self, adapter: LoRAAdapter | None):
        """Load ``adapter`` into the LoRA slot, or (None) switch the slot off: the base model."""
        if adapter is None:
            if self._spec is not None:
                self.denoiser.disable_adapters()
            return
        if adapter.kind != self.kind:
            raise ValueError(f"a {adapter.kind} adapter cannot load into a {self.kind} pipeline")
        from peft import set_peft_model_state_dict

        self._ensure_adapter(adapter.spec)
        out = set_peft_model_state_dict(self.denoiser, adapter.state, adapter_name=_ADAPTER)
        bad = list(getattr(out, "unexpected_keys", []) or [])
        bad += [k for k in getattr(out, "missing_keys", []) or [] if "lora_" in k and _ADAPTER in k]
        if bad:  # a partial load would leave the previous adapter's weights in place
            raise ValueError(f"adapter keys do not fit this denoiser, e.g. {bad[:3]}")
        for p in self._lora_params():
            p.requires_grad_(False)

    # --- sampling ----------------------------------------------------------------------
    def sample(self, prompts: Sequence[str], seeds: Sequence[int], adapter: LoRAAdapter | None = None,
               guidance: float | None = None, steps: int | None = None, batch_size: int = 8):
        """Images (N, 3, R, R) in [0, 1] on the CPU: prompt i drawn from seed i (a CPU
        generator per image, so an image does not depend on its batch), from base +
        ``adapter`` (None: the base model)."""
        import torch

        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        self.use_adapter(adapter)
        kw = dict(height=self.resolution, width=self.resolution, output_type="pt",
                  num_inference_steps=self.sample_steps if steps is None else int(steps),
                  guidance_scale=self.guidance if guidance is None else float(guidance))
        if self.kind == "flux":
            kw["max_sequence_length"] = self.max_sequence_length
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), int(batch_size)):
                gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i : i + batch_size]]
                img = self.pipe(prompt=list(prompts[i : i + batch_size]), generator=gens, **kw).images
                out.append(torch.as_tensor(img).float().cpu())
        return torch.cat(out).clamp(0, 1)


def fine_tune_lora(family: T2IFamily, items: Sequence, steps: int, rank: int, lr: float, seed: int,
                   alpha: float | None = None, batch_size: int = 4, target_modules: Sequence[str] | None = None,
                   weight_decay: float = 1e-2, max_grad_norm: float = 1.0, latents=None,
                   progress: bool = False) -> LoRAAdapter:
    """A LoRA of ``rank`` (alpha = rank unless given) fine-tuned on ``items`` (their
    images and prompts) for ``steps`` AdamW steps of ``batch_size`` from ``seed``: the
    paper's model "trained on coalition S". Each call starts from fresh seeded LoRA
    weights, so the result does not depend on what was trained before. ``latents``:
    the items' VAE latents when already encoded (:meth:`T2IFamily.encode_images`)."""
    import torch
    from tqdm.auto import tqdm

    items = [T2IItem(*it) for it in items]
    if not items:
        raise ValueError("fine_tune_lora needs at least one item")
    if int(steps) < 1 or int(rank) < 1 or float(lr) <= 0:
        raise ValueError(f"need steps >= 1, rank >= 1 and lr > 0; got {steps}, {rank}, {lr}")
    if latents is None:
        latents = family.encode_items([it.image for it in items],
                                      [image_seed(seed, "latent", i) for i in range(len(items))])
    if len(latents) != len(items):
        raise ValueError(f"{len(latents)} latents for {len(items)} items")
    prompts = [it.prompt for it in items]
    spec = LoRASpec(int(rank), float(rank if alpha is None else alpha),
                    tuple(target_modules or DEFAULT_TARGETS[family.kind]))
    family.reset_adapter(spec, seed)
    params = family._lora_params()
    opt = torch.optim.AdamW(params, lr=float(lr), weight_decay=weight_decay)
    g = torch.Generator().manual_seed(int(seed))
    den = family.denoiser
    den.train()
    order: list[int] = []
    losses = []
    for _ in tqdm(range(int(steps)), desc="LoRA", unit="step", disable=not progress):
        while len(order) < batch_size:
            order += torch.randperm(len(items), generator=g).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        lat = latents[idx].to(family.device, family.dtype)
        loss = family.loss(lat, family.encode_prompts([prompts[i] for i in idx]), g)
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    den.eval()
    for p in params:
        p.requires_grad_(False)
    return LoRAAdapter(family.adapter_state(), spec, family.kind,
                       info={"steps": int(steps), "lr": float(lr), "seed": int(seed), "n_items": len(items),
                             "batch_size": int(batch_size), "losses": losses})


# --- the task ------------------------------------------------------------------------
#: config field -> the environment variable a paper preset reads it from when it is not
#: passed (so ``python -m surrogateshap.tasks.ground_truth`` and ``pytest benchmarks/``
#: find local weights without code); the gpu tests read the same variables
PAPER_PATH_ENV = {"clip_path": "SURROGATESHAP_CLIP_PATH", "aesthetic_head": "SURROGATESHAP_AESTHETIC_HEAD",
                  "lpips_backbone": "SURROGATESHAP_LPIPS_BACKBONE"}
MODEL_PATH_ENV = {"sd": "SURROGATESHAP_SD_PATH", "flux": "SURROGATESHAP_FLUX_PATH"}


def paths_from_env(family: str, fields) -> dict:
    """The local paths of ``fields`` (config field names) set in the environment."""
    env = {**PAPER_PATH_ENV, "model_path": MODEL_PATH_ENV[family]}
    return {f: os.environ[env[f]] for f in fields if f in env and os.environ.get(env[f])}


@dataclass(frozen=True)
class T2IConfig:
    """Settings of a T2I task. ``model_path`` None builds the tiny random pipeline
    (mechanics only); paths name local files, nothing downloads."""

    family: str = "sd"
    model_path: str | None = None
    dtype: str = "float32"  # or bfloat16 (training has no loss scaler: avoid float16)
    resolution: int = 256
    rank: int = 256
    lora_alpha: float | None = None  # None = rank
    target_modules: tuple[str, ...] | None = None  # None = the family's attention projections
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    guidance: float | None = None  # None = SD 7.5, FLUX 3.5
    sample_steps: int | None = None  # None = SD 50 (DDIM), FLUX 28
    max_sequence_length: int | None = None  # FLUX's T5 length (None = 512)
    n_samples: int = 50  # images per coalition (retraining, regenerate)
    bank_per_unit: int = 50
    proxy_samples: int | None = None  # None: the whole bank, weighted; n: n bank images (= regenerate)
    bank_seed: int = 0
    clip_path: str | None = None  # local transformers CLIP folder (or open_clip weights file)
    clip_backend: str = "transformers"  # or "open_clip"
    clip_model: str = "ViT-L-14"  # open_clip's model name
    aesthetic_head: str | None = None  # LAION aesthetic predictor .pth
    lpips_backbone: str | None = None  # torchvision's alexnet-owt-7be5be79.pth
    n_clusters: int = 20
    sample_batch: int = 16
    models_per_batch: int = 1
    device: str = "auto"

    @classmethod
    def preset(cls, scale: str = "default", **overrides):
        """``ci``: the tiny random pipeline at 16 px, a few steps; other scales: the
        class's defaults (task configs subclass this and define their own presets)."""
        base = cls()
        if scale == "ci":
            base = dataclasses.replace(base, model_path=None, resolution=16, rank=4, steps=4, batch_size=2,
                                       lr=1e-3, sample_steps=2, n_samples=8, bank_per_unit=8, sample_batch=8,
                                       n_clusters=3)
        return dataclasses.replace(base, **overrides)


@dataclass(frozen=True)
class PaperT2IConfig(T2IConfig):
    """A paper task's T2I config: the presets ``paper`` (also ``default``: such a task has
    no CPU size) with its local files read from the environment when not passed, and
    ``ci``, the tiny random pipeline (``tiny``: no model files needed). A subclass names
    ``LABEL``, its ``CPU_TWIN`` task, its ``MODEL_FILES`` as (field, what it is, file
    expected inside a folder or "") and ``CI_OVERRIDES`` of its own fields."""

    tiny: bool = False  # True: the tiny random pipeline and no model files (ci)
    LABEL: ClassVar[str] = "this task"
    CPU_TWIN: ClassVar[str] = ""
    MODEL_FILES: ClassVar[tuple] = ()
    CI_OVERRIDES: ClassVar[dict] = {}

    @classmethod
    def preset(cls, scale: str = "paper", **overrides):
        if scale in ("paper", "default"):  # local files not passed come from the environment
            env = paths_from_env(cls.family, [f for f, _, _ in cls.MODEL_FILES])
            return dataclasses.replace(cls(), **{**env, **overrides})
        if scale == "ci":
            tiny = T2IConfig.preset("ci", family=cls.family)
            small = {f.name: getattr(tiny, f.name) for f in dataclasses.fields(T2IConfig)}
            return dataclasses.replace(cls(), **{**small, "tiny": True, **cls.CI_OVERRIDES, **overrides})
        raise KeyError(f"{cls.LABEL} has the paper scale (a GPU task) and ci (tiny random pipeline), "
                       f"not {scale!r}; {cls.CPU_TWIN} is its CPU counterpart")

    def missing_model_files(self) -> list[str]:
        """The model files this config needs that are not configured or not present."""
        if self.tiny:
            return []
        out = []
        for name, what, inside in self.MODEL_FILES:
            value = getattr(self, name)
            if not value:
                out.append(f"{name}: {what}, not set")
            elif not (Path(value) / inside).exists():
                out.append(f"{name}: {what}, {Path(value) / inside if inside else value} not found")
        return out

    def missing_files(self) -> list[str]:
        return self.missing_model_files()


class T2ITask(DiffusionTask):
    """Contributors of a T2I dataset to a pretrained pipeline fine-tuned with LoRA.

    A task file sets ``name``, ``players``, ``utilities`` (names of
    :data:`~surrogateshap.tasks.t2i_metrics.T2I_UTILITIES`) and ``config_cls`` (a
    :class:`T2IConfig` subclass with presets) and implements ``load_dataset()``.
    ``family`` and ``featurizer`` may be injected (tests).
    """

    config_cls = T2IConfig
    cost_unit = "LoRA fine-tunings"
    # the weight paths stay in the config id: another model or scorer never reads these caches
    execution_fields = DiffusionTask.execution_fields + ("sample_batch",)

    def __init__(self, config=None, scale: str = "default", cache_dir=None, family: T2IFamily | None = None,
                 featurizer: T2IFeaturizer | None = None, **overrides):
        if config is None:
            config = self.config_cls.preset(scale, **overrides)
        elif overrides:
            raise TypeError("pass either a config or overrides of a preset, not both")
        super().__init__(config, cache_dir)
        unknown = [u for u in self.utilities if u not in T2I_UTILITIES]
        if unknown:
            raise KeyError(f"{self.name}: unknown T2I utilities {unknown}; known: {sorted(T2I_UTILITIES)}")
        if family is not None:
            self.__dict__["family"] = family
        if featurizer is not None:
            self.__dict__["featurizer"] = featurizer

    # --- data ---------------------------------------------------------------------
    def load_dataset(self) -> T2IDataset:
        raise NotImplementedError

    @cached_property
    def dataset(self) -> T2IDataset:
        ds = self.load_dataset()
        if tuple(ds.players) != tuple(self.players):
            raise ValueError(f"{self.name}: the dataset's players {ds.players[:5]}... are not the task's")
        return ds

    def data_missing(self) -> str | None:
        from surrogateshap.tasks.datasets import DataMissingError

        try:
            self.dataset
        except DataMissingError as e:
            return str(e)
        missing = self.missing_files()
        return f"{self.name}: " + "; ".join(missing) if missing else None

    def missing_files(self) -> list[str]:
        """The local model files the config needs and does not find, one line each. A
        paper config that names its files has ``missing_files()``; a plain T2IConfig
        without ``model_path`` is the tiny random pipeline and needs none."""
        check = getattr(self.config, "missing_files", None)
        return list(check()) if check is not None else []

    def _require_files(self):
        from surrogateshap.tasks.datasets import DataMissingError

        missing = self.missing_files()
        if missing:
            raise DataMissingError(f"{self.name}: " + "; ".join(missing))

    @property
    def item_contributor(self) -> np.ndarray:
        return self.dataset.item_contributor

    @cached_property
    def _units(self):
        return self.dataset.units()

    @property
    def units(self) -> tuple[str, ...]:
        return self._units[0]

    def unit_weights(self, mask) -> np.ndarray:
        """pi_S over units: the share of coalition S's items whose prompt is each unit."""
        mem = self.members(mask)
        if len(mem) == 0:
            raise ValueError("the empty coalition has no unit weights")
        c = np.bincount(self._units[1][mem], minlength=len(self.units)).astype(float)
        return c / c.sum()

    # --- model and features ----------------------------------------------------------
    @cached_property
    def family(self) -> T2IFamily:
        self._require_files()
        c = self.config
        kw = dict(guidance=c.guidance, sample_steps=c.sample_steps, max_sequence_length=c.max_sequence_length)
        if c.model_path is None:
            return T2IFamily.tiny(c.family, resolution=c.resolution, device=_device(c.device), **kw)
        return T2IFamily.from_pretrained(c.family, c.model_path, dtype=c.dtype, device=c.device,
                                         resolution=c.resolution, **kw)

    @cached_property
    def featurizer(self) -> T2IFeaturizer:
        """CLIP embedder, aesthetic head and LPIPS as the utilities need, from local files."""
        from surrogateshap.tasks.aesthetic import AestheticHead, CLIPImageEmbedder
        from surrogateshap.tasks.t2i_metrics import LPIPS

        self._require_files()
        c = self.config
        need_clip = any(u.startswith("aesthetic") or u == "diversity" for u in self.utilities)
        embedder = aesthetic = lpips = refs = None
        dev = _device(c.device)
        if need_clip:
            if not c.clip_path:
                raise ValueError(f"{self.name}: utilities {self.utilities} need CLIP: set clip_path")
            embedder = (CLIPImageEmbedder.from_open_clip(c.clip_model, c.clip_path, device=dev)
                        if c.clip_backend == "open_clip" else CLIPImageEmbedder.from_transformers(c.clip_path, dev))
        if any(u.startswith("aesthetic") for u in self.utilities):
            if not c.aesthetic_head:
                raise ValueError(f"{self.name}: aesthetic utilities need aesthetic_head (the predictor's .pth)")
            aesthetic = AestheticHead.from_file(c.aesthetic_head)
        if "neg_lpips" in self.utilities:
            if not c.lpips_backbone:
                raise ValueError(f"{self.name}: neg_lpips needs lpips_backbone (AlexNet weights file)")
            lpips = LPIPS(c.lpips_backbone, device=dev)
            refs = self.unit_references()
        files = self.attribute_files()
        attributes = {n: load_attribute_classifier(f, n, device=dev) for n, f in files.items()}
        size = getattr(c, "attribute_size", None)
        parts = [c.clip_backend, c.clip_model, c.clip_path, c.aesthetic_head, c.lpips_backbone]
        return T2IFeaturizer(embedder, aesthetic, lpips, refs, attributes=attributes, attribute_size=size,
                             name=stable_hash(parts + ([sorted(files.items()), size] if files else [])))

    def attribute_files(self) -> dict[str, str]:
        """name -> local TorchScript file of each attribute classifier the utilities
        read (none by default; the clinical audit's sex and melanoma classifiers)."""
        return {}

    def unit_references(self) -> dict:
        """unit -> the training image of its first item (LPIPS's reference; loaded when used)."""
        first = {}
        for it in self.dataset.items:
            first.setdefault(it.prompt, it.image)
        return first

    @cached_property
    def latents(self):
        """Every item's VAE latent, encoded once (CPU)."""
        ds = self.dataset
        return self.family.encode_items([it.image for it in ds.items],
                                        [image_seed(0, "latent", i) for i in range(len(ds.items))])

    # --- coalition models ---------------------------------------------------------------
    def train_adapter(self, mask, seed: int) -> LoRAAdapter:
        """Base + LoRA fine-tuned on coalition ``mask``'s items, seeded per (seed, coalition)."""
        mask = np.asarray(mask, dtype=bool)
        mem = self.members(mask)
        if len(mem) == 0:
            raise ValueError("the empty coalition has no items to fine-tune on")
        c = self.config
        return fine_tune_lora(self.family, [self.dataset.items[i] for i in mem], steps=c.steps, rank=c.rank,
                              lr=c.lr, seed=coalition_seed(seed, mask), alpha=c.lora_alpha,
                              batch_size=c.batch_size, target_modules=c.target_modules, latents=self.latents[mem])

    @cached_property
    def full_adapter(self) -> LoRAAdapter:
        """The LoRA of all items (seed 0), trained once and cached on disk."""
        path = self.cache_dir / self.config_id() / "full_lora.pt"
        if path.exists():
            return LoRAAdapter.load(path)
        adapter = self.train_adapter(np.ones(self.n_players, bool), seed=0)
        adapter.save(path)
        return adapter

    def sample_features(self, adapter: LoRAAdapter | None, unit_weights, n: int, seed: int) -> FeatureSet:
        """Features of ``n`` images, units allocated by ``unit_weights`` (largest
        remainder), image j of unit u from :func:`image_seed` (seed, u, j)."""
        counts = allocate_counts(int(n), np.asarray(unit_weights, float))
        units = [self.units[u] for u in range(len(counts)) for _ in range(counts[u])]
        seeds = [image_seed(seed, self.units[u], j) for u in range(len(counts)) for j in range(counts[u])]
        imgs = self.family.sample(units, seeds, adapter=adapter, batch_size=self.config.sample_batch)
        return FeatureSet(self.featurizer(imgs, units), info={"unit_counts": counts})

    def retrain_stats(self, masks, seed: int) -> list[FeatureSet]:
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        return [self.sample_features(self.train_adapter(m, seed), self.unit_weights(m), self.config.n_samples,
                                     coalition_seed(seed + 1000, m)) for m in masks]

    def empty_stats(self) -> FeatureSet:
        """v(empty)'s samples: the base model (no adapter), the full data's prompts."""
        if not hasattr(self, "_empty"):
            self._empty = self.sample_features(None, self.unit_weights(np.ones(self.n_players, bool)),
                                               self.config.n_samples, self.config.bank_seed)
        return self._empty

    def real_stats(self):
        """T2I utilities need no real-data statistics (LPIPS compares each image with
        its own prompt's training image)."""
        return None

    def score(self, fs: FeatureSet) -> dict[str, float]:
        out = {}
        for u in self.utilities:
            kw = {"k": self.config.n_clusters} if u == "diversity" else {}
            out[u] = t2i_utility(u, fs, **kw)
            if not np.isfinite(out[u]):
                raise ValueError(f"{self.name}: utility {u} is {out[u]} (non-finite)")
        return out

    # --- the proxy's sample bank ------------------------------------------------------
    def bank(self) -> SampleBank:
        c = self.config
        header = {"task": self.config_id(), "adapter": "full-seed0", "featurizer": self.featurizer.name,
                  "seed": c.bank_seed, "resolution": self.family.resolution, "guidance": self.family.guidance,
                  "sample_steps": self.family.sample_steps}
        return SampleBank(self.cache_dir / self.config_id() / f"bank-{stable_hash(header)}", header)

    def build_bank(self, progress: bool = True) -> int:
        """Generate the full model's missing bank images (resumable); returns how many."""
        bank, c = self.bank(), self.config
        adapter = None  # loaded on the first batch only: nothing to load when the bank is complete

        def generate(pairs):
            nonlocal adapter
            if adapter is None:
                adapter = self.full_adapter
            imgs = self.family.sample([u for u, _ in pairs], [image_seed(c.bank_seed, u, j) for u, j in pairs],
                                      adapter=adapter, batch_size=c.sample_batch)
            return self.featurizer(imgs, [u for u, _ in pairs])

        return bank.build(self.units, c.bank_per_unit, generate, batch_size=c.sample_batch, progress=progress)

    def bank_stats(self) -> BankFeatures:
        if not hasattr(self, "_bank_features"):
            self.build_bank()
            self._bank_features = self.bank().features(self.units, self.config.bank_per_unit)
        return self._bank_features

    def regenerate_stats(self, mask, seed: int) -> FeatureSet:
        """Fresh samples of the full model for coalition ``mask``; with seed =
        ``bank_seed`` they are the bank's own images (the proxy with
        ``proxy_samples = n_samples`` then agrees exactly)."""
        return self.sample_features(self.full_adapter, self.unit_weights(mask), self.config.n_samples, seed)

    def proxy_game(self, utility: str, mode: str = "bank", seed: int = 0, executor=None,
                   samples: int | None = None) -> "T2IProxyGame":
        return T2IProxyGame(self, utility, mode=mode, seed=seed, samples=samples)


class T2IProxyGame(Game):
    """SurrogateSHAP's proxy game for a T2I task.

    mode="bank": mix the full model's per-unit sample bank with coalition S's unit
    weights (no generation per coalition; ``samples`` None = the whole bank weighted,
    n = n bank images allocated like the paper's samples). mode="regenerate": generate
    ``n_samples`` fresh images per coalition (the paper's protocol).
    """

    cost_unit = "images generated"

    def __init__(self, task: T2ITask, utility: str, mode: str = "bank", seed: int = 0, samples: int | None = None):
        task._check_utility(utility)
        if mode not in ("bank", "regenerate"):
            raise ValueError(f"mode must be 'bank' or 'regenerate', got {mode!r}")
        super().__init__(task.players)
        self.task, self.utility, self.mode, self.seed = task, utility, mode, int(seed)
        self.samples = task.config.proxy_samples if samples is None else int(samples)

    def _score(self, fs: FeatureSet) -> float:
        return self.task.score(fs)[self.utility]

    def _evaluate(self, masks):
        out = np.empty(len(masks))
        for r, m in enumerate(masks):
            if not m.any():
                out[r] = self._score(self.task.empty_stats())
            elif self.mode == "bank":
                out[r] = self._score(self.task.bank_stats().mixture(self.task.unit_weights(m), n=self.samples))
            else:
                out[r] = self._score(self.task.regenerate_stats(m, self.seed))
        return out

    def cost_of(self, masks):
        if self.mode == "bank":
            return 0.0
        return float(sum(bool(m.any()) for m in masks) * self.task.config.n_samples)

    def cache_id(self):
        return f"t2i-proxy:{self.task.config_id()}:{self.utility}:{self.mode}:{self.samples}:{self.seed}"

