"""A diffusers text-to-image pipeline with one LoRA slot: the base model of the LoRA
family (:mod:`surrogateshap.tasks.models.lora`).

:class:`T2IPipeline` wraps a diffusers pipeline ("sd": StableDiffusionPipeline, "flux":
FluxPipeline) loaded from a local folder (``from_pretrained``, nothing downloads), or
built tiny and random from configs (``tiny``: tests, ci). It encodes images and
prompts, computes the training loss (SD: epsilon / v MSE under DDPMScheduler; FLUX:
rectified flow, target noise - x0), holds one peft LoRA adapter, and samples. Images
are float tensors (N, 3, H, W) in [0, 1] throughout (the VAE sees [-1, 1]).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from surrogateshap.tasks.common import resolve_device
from surrogateshap.tasks.data.t2i import load_images

__all__ = ["T2IPipeline", "KINDS", "PIPELINE_PARTS", "DEFAULT_TARGETS", "DEFAULT_GUIDANCE", "DEFAULT_SAMPLE_STEPS",
           "torch_dtype"]

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


def torch_dtype(name):
    import torch

    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if isinstance(name, torch.dtype):
        return name
    if name not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, got {name!r}")
    return table[name]


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


class T2IPipeline:
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
        self._spec = None  # the LoRASpec of the adapter slot

    # --- construction ---------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, kind: str, path, dtype="float32", device="auto", resolution: int | None = None,
                        sampler: str | None = None, **kw) -> "T2IPipeline":
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
            from surrogateshap.tasks.data.images import DataMissingError

            raise DataMissingError(
                f"no local {kind} pipeline at {path}: it lacks {', '.join(missing)} (a diffusers folder needs "
                f"model_index.json and the subfolders {', '.join(PIPELINE_PARTS[kind])}; nothing is downloaded)")
        dt = torch_dtype(dtype)
        if kind == "sd":
            from diffusers import DDIMScheduler, StableDiffusionPipeline

            pipe = StableDiffusionPipeline.from_pretrained(path, torch_dtype=dt, local_files_only=True,
                                                           safety_checker=None, requires_safety_checker=False)
            if sampler != "folder":
                pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
            if resolution is None:
                resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
        else:
            from diffusers import FluxPipeline

            pipe = FluxPipeline.from_pretrained(path, torch_dtype=dt, local_files_only=True)
            if resolution is None:
                resolution = pipe.default_sample_size * pipe.vae_scale_factor
        pipe.to(resolve_device(device))
        return cls(pipe, kind, resolution, **kw)

    @classmethod
    def tiny(cls, kind: str = "sd", seed: int = 0, resolution: int = 16, device="cpu", **kw) -> "T2IPipeline":
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
                from diffusers import (
                    DDIMScheduler,
                    StableDiffusionPipeline,
                    UNet2DConditionModel,
                )

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
                from diffusers import (
                    FlowMatchEulerDiscreteScheduler,
                    FluxPipeline,
                    FluxTransformer2DModel,
                )
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
    @property
    def n_timesteps(self) -> int:
        """Timesteps the training loss draws from (indices 0..n-1)."""
        sch = self.train_scheduler
        return int(sch.config.num_train_timesteps) if self.kind == "sd" else len(sch.timesteps)

    def prediction(self, latents, cond: dict, t, noise, denoiser=None):
        """(the denoiser's prediction, its training target) for a batch of latents at
        timestep indices ``t`` with this ``noise``; ``denoiser`` replaces the pipeline's
        own (e.g. a functional call with other parameters)."""
        import torch

        sch = self.train_scheduler
        dev, dt = latents.device, latents.dtype
        b = latents.shape[0]
        if self.kind == "sd":
            den = denoiser or self.pipe.unet
            noisy = sch.add_noise(latents, noise, t)
            pred = den(noisy, t, encoder_hidden_states=cond["encoder_hidden_states"]).sample
            target = noise if sch.config.prediction_type == "epsilon" else sch.get_velocity(latents, noise, t)
            return pred, target
        from diffusers import FluxPipeline

        den = denoiser or self.pipe.transformer
        sigma = sch.sigmas[t].to(dev, dt).view(b, 1, 1, 1)
        timestep = sch.timesteps[t].to(dev, dt)
        noisy = (1 - sigma) * latents + sigma * noise
        _, c, h, w = latents.shape
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, dev, dt)
        tr = self.pipe.transformer
        guidance = torch.full((b,), self.guidance, device=dev, dtype=dt) if tr.config.guidance_embeds else None
        pred = den(hidden_states=packed, timestep=timestep / 1000, guidance=guidance,
                   pooled_projections=cond["pooled_projections"], encoder_hidden_states=cond["encoder_hidden_states"],
                   txt_ids=cond["txt_ids"], img_ids=img_ids, return_dict=False)[0]
        vsf = self.pipe.vae_scale_factor
        pred = FluxPipeline._unpack_latents(pred, height=h * vsf, width=w * vsf, vae_scale_factor=vsf)
        return pred, noise - latents

    def loss(self, latents, cond: dict, generator):
        """The denoising loss of a batch of latents (on the family's device) with noise
        and timesteps drawn from ``generator`` (a CPU torch.Generator)."""
        import torch
        import torch.nn.functional as F

        b = len(latents)
        dev, dt = latents.device, latents.dtype
        noise = torch.randn(latents.shape, generator=generator).to(dev, dt)
        if self.kind == "sd":
            t = torch.randint(0, self.n_timesteps, (b,), generator=generator).to(dev)
        else:
            t = (torch.rand(b, generator=generator) * self.n_timesteps).long().clamp(max=self.n_timesteps - 1)
        pred, target = self.prediction(latents, cond, t, noise)
        return F.mse_loss(pred.float(), target.float())

    # --- the LoRA slot -----------------------------------------------------------------
    def _ensure_adapter(self, spec):
        den = self.denoiser
        if self._spec != spec:
            if self._spec is not None:
                den.delete_adapters(_ADAPTER)
            den.add_adapter(spec.config(), adapter_name=_ADAPTER)
            self._spec = spec
        den.enable_adapters()

    def _lora_params(self):
        return [p for n, p in self.denoiser.named_parameters() if "lora_" in n]

    def reset_adapter(self, spec, seed: int):
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

    def use_adapter(self, adapter=None):
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
    def sample(self, prompts: Sequence[str], seeds: Sequence[int], adapter=None,
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
