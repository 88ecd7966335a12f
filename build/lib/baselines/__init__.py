"""Game-based baseline estimators, one module per idea; importing the package registers them.

- ``exact``: enumeration of all 2**n coalitions;
- ``loo``: leave-one-out;
- ``permutation``: permutation sampling (plain, antithetic, truncated Monte Carlo);
- ``regression``: KernelSHAP, Leverage SHAP and linear datamodels;
- ``semivalues``: Banzhaf values by maximum sample reuse.

The library never imports this package: it is registered through the
``surrogateshap.estimators`` entry point in ``pyproject.toml``, the same way a user's
plug-in package registers its own estimators.
"""

from baselines import exact, loo, permutation, regression, semivalues

__all__ = ["exact", "loo", "permutation", "regression", "semivalues"]
