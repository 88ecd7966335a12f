"""The project's own estimators, one module per idea; importing the package registers them.

- ``surrogate``: SurrogateSHAP (a tree surrogate of sampled coalitions, exact TreeSHAP);
- ``residual``: the residual game v - c g and its Monte Carlo Shapley estimate, shared
  by SurrogateSHAP's ``adjustment=`` and the control-variate estimator;
- ``control_variate``: ``proxy-cv``, a cheap proxy game steadying an expensive one;
- ``auto``: an estimator chosen from (n, budget, cheap evaluations) by measured rules;
- ``multifidelity``: ``multifidelity``, retraining, fine-tuning and proxy games in one
  estimate, the steps split where they pay.

Registered through the ``surrogateshap.estimators`` entry point (``pyproject.toml``),
like the classic baselines in the top-level ``baselines`` package and like a user's
plug-in. Estimators named as parameters (SurrogateSHAP's ``adjustment=``, proxy-cv's
``residual=`` and ``cheap_values=``) are looked up in the registry at run time, so
naming a baseline there needs the ``baselines`` entry point installed
(``pip install -e .``); the library never imports it.
"""

from surrogateshap.estimators import auto, control_variate, multifidelity, surrogate

__all__ = ["auto", "control_variate", "multifidelity", "surrogate"]
