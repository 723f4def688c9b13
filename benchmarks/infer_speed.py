"""MCMC through a surrogate: choral's vectorised HMC against pyro's NUTS, effective draws per
second, on the same posterior.

    PYTHONPATH=. python benchmarks/infer_speed.py [--out FILE]

A 5-member surrogate of the borehole function (400 runs); an observation of it at the box's
centre with 1% noise; box-uniform prior. choral: ``infer`` (8 chains in one batch, 300
warmup, 500 draws). pyro: NUTS (``pyro.infer.MCMC``, 2 chains run one after the other; 300
warmup, 500 draws) on the same potential (the same likelihood, prior and unconstrained map).
Reported: wall seconds, the smallest ESS over inputs, ESS per second, the largest R-hat, and
the posterior means of both (they must agree). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _report import emit  # run as a script: benchmarks/ is on sys.path

from choral.config import Config
from choral.inference import SurrogateLikelihood, box_prior, infer
from choral.simulators import SIMULATORS
from choral.surrogate import Surrogate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import pyro
    from pyro.infer import MCMC, NUTS
    from pyro.ops.stats import effective_sample_size, split_gelman_rubin
    from torch.distributions import biject_to

    sim = SIMULATORS["borehole"]
    X = sim.sample(400, seed=0)
    model = Surrogate(Config().updated(**{"train.members": 5, "train.epochs": 300})).fit(
        X, sim(X))
    centre = sim.bounds.mean(1, keepdims=True).T
    y_obs = sim(centre)[0]
    noise = 0.01 * abs(y_obs)
    prior = box_prior(sim.bounds)
    report = {}
    start = time.perf_counter()
    post = infer(model, y_obs, noise, prior, chains=8, warmup=300, draws=500, seed=0)
    took = time.perf_counter() - start
    report["choral_hmc"] = {"seconds": round(took, 1), "min_ess": float(post.ess.min()),
                            "ess_per_second": float(post.ess.min() / took),
                            "max_rhat": float(post.rhat.max()),
                            "mean": post.flat.mean(0).tolist()}
    print(json.dumps(report), flush=True)
    lik = SurrogateLikelihood(model, y_obs, noise)
    transform = biject_to(prior.support)

    def potential(params):
        z = params["z"][None]
        x = transform(z)
        return -(lik(x) + prior.log_prob(x) + transform.log_abs_det_jacobian(z, x))[0]

    pyro.set_rng_seed(0)
    init = transform.inv(prior.sample((2,)))
    start = time.perf_counter()
    chains = []
    for c in range(2):  # one after the other (pyro's multiprocessing would use both cores)
        mcmc = MCMC(NUTS(potential_fn=potential), num_samples=500, warmup_steps=300,
                    initial_params={"z": init[c]}, disable_progbar=True)
        mcmc.run()
        chains.append(mcmc.get_samples()["z"])
    took = time.perf_counter() - start
    with torch.no_grad():
        x = transform(torch.stack(chains))
    ess = effective_sample_size(x, chain_dim=0, sample_dim=1)
    report["pyro_nuts"] = {"seconds": round(took, 1), "min_ess": float(ess.min()),
                           "ess_per_second": float(ess.min() / took),
                           "max_rhat": float(split_gelman_rubin(x, 0, 1).max()),
                           "mean": x.reshape(-1, x.shape[-1]).mean(0).tolist()}
    scale = sim.bounds[:, 1] - sim.bounds[:, 0]
    report["mean_difference_over_box_width"] = float(np.max(np.abs(
        np.array(report["choral_hmc"]["mean"]) - np.array(report["pyro_nuts"]["mean"])) / scale))
    emit(report, args.out)


if __name__ == "__main__":
    main()
