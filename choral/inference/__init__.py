"""Inverse problems through a surrogate: the posterior of a simulator's inputs given observed
outputs, with the ensemble's epistemic uncertainty in the likelihood.

- :mod:`.likelihood`: the member mixture's joint likelihood with observation noise;
- :mod:`.prior`: box-uniform, Gaussian or user-supplied priors (torch distributions);
- :mod:`.hmc`: vectorised many-chain HMC with step-size and mass adaptation;
- :mod:`.mcmc`: :func:`infer`, the posterior samples with R-hat and ESS.
"""

from choral.inference.likelihood import SurrogateLikelihood, member_moments
from choral.inference.mcmc import Posterior, infer
from choral.inference.prior import box_prior, check_prior, gaussian_prior

__all__ = ["Posterior", "SurrogateLikelihood", "box_prior", "check_prior", "gaussian_prior",
           "infer", "member_moments"]
