"""Game-based baseline estimators; importing the package registers them all.

exact (enumeration), permutation / permutation-antithetic / tmc (permutation
sampling), kernelshap / leverageshap (regression), loo (leave-one-out), banzhaf-msr
(Banzhaf values, not Shapley) and datamodels (linear datamodels).
"""

from baselines import banzhaf, datamodels, exact, kernelshap, loo, permutation

__all__ = ["banzhaf", "datamodels", "exact", "kernelshap", "loo", "permutation"]
