"""Inverse problems through a surrogate: the posterior of a simulator's inputs given observed
outputs, with the ensemble's epistemic uncertainty in the likelihood.

- :mod:`.likelihood`: the member mixture's joint likelihood with observation noise;
- :mod:`.prior`: box-uniform, Gaussian or user-supplied priors (torch distributions);
- :mod:`.hmc`: vectorised many-chain HMC with step-size and mass adaptation;
- :mod:`.mcmc`: :func:`infer`, the posterior samples with R-hat and ESS;
- :mod:`.npe`: amortised neural posterior estimation, an ensemble of zuko conditional flows;
- :mod:`.diagnostics`: SBC ranks, their uniformity test and the coverage of intervals;
- :mod:`.corner`: a corner plot of posterior samples (imported on demand: matplotlib);
- :mod:`.report`: an HTML report of a posterior, with the mean and std of a field the inputs
  parameterise (imported on demand).
"""

from choral.inference.diagnostics import coverage, rank_uniformity, sbc_ranks
from choral.inference.likelihood import SurrogateLikelihood, member_moments
from choral.inference.mcmc import Posterior, infer
from choral.inference.npe import NeuralPosterior, fit_npe, surrogate_pairs
from choral.inference.prior import box_prior, check_prior, gaussian_prior

__all__ = ["NeuralPosterior", "Posterior", "SurrogateLikelihood", "box_prior", "check_prior",
           "coverage", "fit_npe", "gaussian_prior", "infer", "member_moments", "rank_uniformity",
           "sbc_ranks", "surrogate_pairs"]
