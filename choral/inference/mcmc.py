"""``infer``: posterior samples of a simulator's inputs given observed outputs, by MCMC through
the surrogate likelihood (:mod:`.likelihood`) with the ensemble's epistemic uncertainty in it.

The posterior ``p(x | y_obs) ~ p(y_obs | x) p(x)`` is sampled by vectorised HMC (:mod:`.hmc`)
on the unconstrained space of the prior's support (``x = T(z)``, the log-Jacobian of ``T``
added, as Stan and pyro do), with chains started by sampling-importance-resampling from the
prior (``init_factor`` prior draws per chain, resampled by likelihood). Convergence is reported
per input: split R-hat and the effective sample size (pyro's ``split_gelman_rubin`` and
``effective_sample_size``).

Examples:
    >>> import torch
    >>> from choral.inference.prior import box_prior
    >>> members = lambda x: (2 * x[None], torch.full((1, *x.shape), 0.01))  # y = 2 x, s=1
    >>> post = infer(members, y_obs=[1.0], noise=0.1, prior=box_prior([[-1.0, 1.0]]),
    ...              chains=4, warmup=60, draws=50, seed=0)
    >>> post.samples.shape, abs(post.samples.mean().item() - 0.5) < 0.05
    ((4, 50, 1), True)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution, biject_to

from choral.checks import check_int
from choral.errors import ConfigError, DataError
from choral.inference.hmc import hmc
from choral.inference.likelihood import SurrogateLikelihood
from choral.inference.prior import check_prior

__all__ = ["Posterior", "infer"]


@dataclass
class Posterior:
    """Posterior samples of the inputs and how the sampler did.

    Attributes:
        samples: (c, draws, d) per chain; :attr:`flat` stacks them (c draws, d).
        rhat: split R-hat per input (d,); near 1 when the chains agree.
        ess: effective sample size per input (d,), over all chains.
        info: step size, acceptance, divergences, seconds, settings.
    """

    samples: np.ndarray
    rhat: np.ndarray
    ess: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def flat(self) -> np.ndarray:
        """All draws (c draws, d)."""
        return self.samples.reshape(-1, self.samples.shape[-1])

    def summary(self, level: float = 0.9) -> dict[str, Any]:
        """Per input: mean, std, the central interval at ``level``, R-hat and ESS; and info."""
        flat = self.flat
        lo, hi = np.quantile(flat, [(1 - level) / 2, (1 + level) / 2], axis=0)
        return {"mean": flat.mean(0).tolist(), "std": flat.std(0, ddof=1).tolist(),
                "lower": lo.tolist(), "upper": hi.tolist(), "level": level,
                "rhat": self.rhat.tolist(), "ess": self.ess.tolist(), **self.info}


def infer(model: Any, y_obs: Any, noise: Any, prior: Distribution, *, mask: Any = None,
          chains: int = 8, warmup: int = 500, draws: int = 1000, steps: int = 16,
          init_factor: int = 64, seed: int = 0,
          on_draw: Callable[[int], None] | None = None) -> Posterior:
    """Posterior samples of the inputs ``x`` (d,) of ``model`` given ``y_obs``.

    Args:
        model: a fitted surrogate (vector inputs (n, d)) or a
            :data:`~choral.inference.likelihood.MemberMoments` function.
        y_obs: the observed outputs, of the model's output shape (m,) or (c, *grid).
        noise: observation noise standard deviation(s) ``sigma`` (Gaussian, independent).
        prior: a distribution of (d,) vectors (:mod:`choral.inference.prior`).
        mask: booleans of the output shape marking the observed values (default: all).
        chains, warmup, draws, steps: HMC chains, adaptation iterations, kept draws per chain
            and the most leapfrog steps per draw (uniform from 1 to ``steps``).
        init_factor: prior draws per chain for the starting points.
        seed: seeds the starting points and the sampler.
        on_draw: called after every iteration (progress).
    """
    chains = check_int(chains, "chains", minimum=2)
    init_factor = check_int(init_factor, "init_factor", minimum=1)
    lik = SurrogateLikelihood(model, y_obs, noise, mask)
    x_shape = getattr(model, "x_shape", None)
    if x_shape is not None and len(x_shape) != 1:
        raise DataError(f"infer needs a model of vector inputs (n, d); this one takes inputs "
                        f"of shape (n, {', '.join(map(str, x_shape))})")
    d = prior.event_shape[0] if isinstance(prior, Distribution) and prior.event_shape else -1
    prior = check_prior(prior, x_shape[0] if x_shape else d)
    transform = biject_to(prior.support)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # prior.sample has no generator argument

    def log_density(z: Tensor) -> Tensor:
        x = transform(z)
        return lik(x) + prior.log_prob(x) + transform.log_abs_det_jacobian(z, x)

    start = time.perf_counter()
    with torch.no_grad():
        candidates = prior.sample((chains * init_factor,)).to(torch.float64)
        weights = torch.softmax(lik(candidates), 0)
        weights = torch.nan_to_num(weights, nan=0.0) + 1e-300
    pick = torch.multinomial(weights, chains, replacement=True, generator=generator)
    init = transform.inv(candidates[pick])
    run = hmc(log_density, init, warmup, draws, steps, generator=generator, on_draw=on_draw)
    with torch.no_grad():
        x = transform(run.samples)
    stats = _pyro_stats()
    rhat = stats.split_gelman_rubin(x, chain_dim=0, sample_dim=1)
    ess = stats.effective_sample_size(x, chain_dim=0, sample_dim=1)
    info = {"chains": chains, "warmup": warmup, "draws": draws, "steps": steps,
            "step_size": run.step_size, "acceptance": run.acceptance,
            "divergences": run.divergences, "seconds": time.perf_counter() - start,
            "seed": seed}
    return Posterior(x.cpu().numpy(), rhat.cpu().numpy(), ess.cpu().numpy(), info)


def _pyro_stats() -> Any:
    """pyro's MCMC statistics (split R-hat, ESS), an optional dependency."""
    try:
        from pyro.ops import stats
    except ImportError:  # pragma: no cover - the extra is installed in the test environment
        raise ConfigError("infer reports R-hat and ESS with pyro-ppl, which is not installed: "
                          "pip install 'choral[inference]'") from None
    return stats
