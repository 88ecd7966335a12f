"""Scorers: how a task's samples become statistics, utilities and the proxy's bank.

One registry: ``@register_scorer("name")`` on a class taking ``(task, **parts)``; a
task's config names its scorer (field ``featurizer``, else the task's ``scorer_name``).
A scorer offers ``stats(images, units) -> statistics`` (what a utility reads),
``score(statistics) -> {utility: value}``, ``real_stats()``, ``bank_stats()`` (the
full model's per-unit bank), ``features(images)``, and the identity of the networks it
scores with (``recipes()``, ``networks()``, ``parts()``). Built in:

- ``net``, ``inception``: sufficient statistics of image features (FID, IS, coverage
  and a task's own per-sample scores; :mod:`.image_scoring`);
- ``t2i``: per-image features of text-to-image samples (aesthetic score, LPIPS, CLIP
  diversity, attribute calls; :mod:`.t2i_scoring`).
"""

from __future__ import annotations

from surrogateshap.tasks.common import Registry

__all__ = ["register_scorer", "make_scorer", "available_scorers", "SCORERS"]

SCORERS = Registry("featurizer", "featurizers", {
    "net": "surrogateshap.tasks.features.image_scoring:StatsScorer",
    "inception": "surrogateshap.tasks.features.image_scoring:StatsScorer",
    "t2i": "surrogateshap.tasks.features.t2i_scoring:T2IScorer",
})
register_scorer = SCORERS.register


def available_scorers() -> list[str]:
    return SCORERS.names()


def make_scorer(name: str, task, **parts):
    return SCORERS.get(name)(task, **parts)
