"""Model families: how a task trains one model per coalition, samples from it, and what
its empty coalition generates. One registry: ``@register_family("name")`` on a class with
``from_task(task)`` (or a function ``task -> family``); a task's config names its family
(field ``family``, else the task's ``family_name``).

A family offers ``prepare(dataset) -> data`` (the training data in its layout, once),
``train(data, members, seeds) -> models`` (one per coalition: ``members[k]`` the item
indices, ``seeds[k]`` its seed), ``sample(models, labels, seed) -> images`` (row k of the
unit labels from model k), ``prior(units) -> images`` (the empty coalition: a model
that learned nothing), ``save``/``load`` of one model, and optionally
``model_access(task)`` (the TRAK family's seam), fine-tuning, and ``train(...,
progress=True)``: a bar over the steps, asked for the full model's training. Built in:

- ``mlp``: the batched residual-MLP DDPM (:mod:`.mlp`), cheap on a CPU;
- ``unet``: the diffusers UNet DDPM (:mod:`.unet`), the paper's CIFAR model;
- ``sd``, ``flux``: a pretrained pipeline + one LoRA per coalition (:mod:`.lora`).
"""

from __future__ import annotations

from surrogateshap.tasks.common import Registry

__all__ = ["register_family", "make_family", "available_families", "family_offers", "FAMILIES"]

#: built-in family name -> "module:class", imported on first use (they import torch)
FAMILIES = Registry("model family", "families", {
    "mlp": "surrogateshap.tasks.models.mlp:MLPFamily",
    "unet": "surrogateshap.tasks.models.unet:UNetFamily",
    "sd": "surrogateshap.tasks.models.lora:LoRAFamily",
    "flux": "surrogateshap.tasks.models.lora:LoRAFamily",
})
register_family = FAMILIES.register


def available_families() -> list[str]:
    return FAMILIES.names()


def make_family(name: str, task, **parts):
    """The family ``name`` for ``task`` (settings read from its config); ``parts`` are
    passed to its ``from_task`` (e.g. a ready pipeline)."""
    factory = FAMILIES.get(name)
    return factory.from_task(task, **parts) if hasattr(factory, "from_task") else factory(task, **parts)


def family_offers(name: str) -> tuple[str, ...]:
    """What a family offers model-based estimators: ("model",) when it has model access."""
    return ("model",) if hasattr(FAMILIES.get(name), "model_access") else ()
