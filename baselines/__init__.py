"""Game-based baseline estimators, one module per idea; importing the package registers them.

- ``exact``: enumeration of all 2**n coalitions;
- ``loo``: leave-one-out;
- ``permutation``: permutation sampling (plain, antithetic, truncated Monte Carlo);
- ``regression``: KernelSHAP, Leverage SHAP and linear datamodels;
- ``semivalues``: Banzhaf values by maximum sample reuse;
- ``stratified``: stratified SVARM (strata by coalition size, border trick);
- ``kadd``: k-additive SHAP (kADD-SHAP), a regression on interactions up to order k;
- ``trak``: model-based: TRAK, D-TRAK, Journey-TRAK, influence, gradient similarity;
- ``similarity``: model-based: pixel and feature cosine similarity.

Model-based estimators declare ``requires = ("model",)`` and are given
``model=task.model_access()`` (:mod:`surrogateshap.model_access`).

The library never imports this package: it is registered through the
``surrogateshap.estimators`` entry point in ``pyproject.toml``, the same way a user's
plug-in package registers its own estimators.
"""

from baselines import (
    exact,
    kadd,
    loo,
    permutation,
    regression,
    semivalues,
    similarity,
    stratified,
    trak,
)

__all__ = ["exact", "kadd", "loo", "permutation", "regression", "semivalues", "similarity",
           "stratified", "trak"]
