"""Cyclical stochastic-gradient Langevin dynamics, cSGLD (Zhang et al., 2020).

Each member is a Markov chain over its weights ``theta`` (P) targeting the posterior
``p(theta | D) ~ exp(-U(theta) / T)``, ``U = N L(theta) + lambda |theta|^2 / 2``, where ``L`` is
the head's mean loss per target value (the negative log-likelihood in standardised units),
``N`` the number of target values (samples x outputs), ``lambda`` =
``posterior.prior_precision`` and ``T`` = ``posterior.temperature``. A step with learning rate
``lr`` on the mini-batch loss ``L_b`` is

    ``theta <- theta - lr (grad L_b + lambda theta / N) + sqrt(2 lr T / N) xi``,  xi ~ N(0, I),

Langevin dynamics with step ``epsilon = 2 lr / N`` (:class:`SGLD`). The learning rate follows
``posterior.sgmcmc_lr`` times a cosine restarted ``weightspace.cycles`` times over the run
(:func:`~choral.ensembles.schedule.restarts`); in the first ``posterior.exploration`` fraction
of each cycle (large steps) no noise is added (optimisation to a new mode), in the rest it is
(sampling), and the weights after each of the last ``posterior.cycle_samples`` epochs of every
cycle are kept. ``train.ensemble = "sgmcmc"`` runs one chain per member, all members stacked,
from the early-stopped AdamW run when ``weightspace.pretrain``; the networks kept are stored
member-major (members x cycles x cycle_samples), like MultiSWAG. Each member's gradient is
clipped to ``posterior.sgmcmc_clip`` (1; unless ``train.grad_clip`` is set): without it the
steps diverged in Bayesian optimisation (a collapsing Gaussian variance makes the NLL's gradient
explode); clipping biases the chain where it acts.

Examples:
    >>> import torch
    >>> w = torch.zeros(3, requires_grad=True)
    >>> opt = SGLD([w], lr=0.1, n=10, noise_below=0.0, seed=0)  # no noise at this lr
    >>> w.grad = torch.ones(3); opt.step(); w.tolist()  # a plain gradient step
    [-0.10000000149011612, -0.10000000149011612, -0.10000000149011612]
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from choral.ensembles.context import Result, TrainContext
from choral.ensembles.flat import unflatten
from choral.ensembles.registry import register
from choral.ensembles.schedule import restarts
from choral.ensembles.snapshot import cycle_ends
from choral.ensembles.swa import Collected, collecting_run, run_epochs
from choral.errors import ConfigError

__all__ = ["SGLD", "collect_epochs", "sgmcmc"]


class SGLD(torch.optim.Optimizer):
    """Langevin steps on tensors of any shape (members stacked or not): see the module.

    ``n`` (N) scales the loss to the full-data log-likelihood; noise is added when the current
    ``lr`` is at most ``noise_below`` (the sampling stage of a cycle). The noise is drawn on the
    CPU from a generator seeded by ``seed`` (the same chain on every device), whose state is part
    of :meth:`state_dict`, so a checkpointed chain resumes exactly.
    """

    def __init__(self, params: Any, lr: float, n: int, *, prior_precision: float = 1.0,
                 temperature: float = 1.0, noise_below: float = math.inf, seed: int = 0) -> None:
        defaults = {"lr": lr, "n": n, "prior_precision": prior_precision,
                    "temperature": temperature, "noise_below": noise_below}
        super().__init__(params, defaults)
        self.generator = torch.Generator().manual_seed(int(seed))

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: ARG002 - the Optimizer signature
        for group in self.param_groups:
            lr, n = group["lr"], group["n"]
            noisy = lr <= group["noise_below"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.add_(p.grad + group["prior_precision"] / n * p, alpha=-lr)
                if noisy:
                    xi = torch.randn(p.shape, generator=self.generator, dtype=p.dtype)
                    p.add_(xi.to(p.device), alpha=math.sqrt(2.0 * lr * group["temperature"] / n))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.generator.set_state(state.pop("generator"))
        super().load_state_dict(state)


def collect_epochs(epochs: int, cycles: int, per_cycle: int) -> list[int]:
    """The last ``per_cycle`` epochs (0-based) of each of ``cycles`` cycles over ``epochs``.

    >>> collect_epochs(12, 3, 2)
    [2, 3, 6, 7, 10, 11]
    """
    return [end - j for end in cycle_ends(epochs, cycles) for j in range(per_cycle - 1, -1, -1)]


@register("sgmcmc")
def sgmcmc(ctx: TrainContext) -> Result:
    """cSGLD on each of the ``train.members`` members: members x cycles x cycle_samples
    networks (s * K, ...)."""
    post, epochs, cycles = ctx.posterior, run_epochs(ctx), ctx.weightspace.cycles
    length = epochs // cycles
    sampling = length - math.ceil(post.exploration * length)
    if cycles > epochs or post.cycle_samples > sampling:
        raise ConfigError(f"posterior.cycle_samples must be at most the sampling epochs of a "
                          f"cycle ({sampling}: weightspace.epochs {epochs} / weightspace.cycles "
                          f"{cycles}, less the exploration {post.exploration}); got "
                          f"{post.cycle_samples}")
    if ctx.train.grad_clip is None and post.sgmcmc_clip is not None:
        ctx = replace(ctx, train=ctx.train.model_copy(update={"grad_clip": post.sgmcmc_clip}))
    n = len(ctx.X) * math.prod(ctx.Y.shape[1:])  # target values: the likelihood's terms
    cosine = restarts(epochs, cycles)
    ratio = post.sgmcmc_lr / ctx.train.lr
    noise_below = post.sgmcmc_lr * 0.5 * (1.0 + math.cos(math.pi * post.exploration))

    def optimizer(params: list[Tensor]) -> SGLD:
        return SGLD(params, post.sgmcmc_lr, n, prior_precision=post.prior_precision,
                    temperature=post.temperature, noise_below=noise_below,
                    seed=ctx.train.seed + 7919)

    kept = Collected()
    last, history = collecting_run(ctx, ctx.train.members, lambda t: ratio * cosine(t),
                                   collect_epochs(epochs, cycles, post.cycle_samples), kept,
                                   optimizer)
    flat = torch.stack(list(kept), dim=1).flatten(0, 1)  # member-major (s * K, P)
    if not torch.isfinite(flat).all():
        raise ConfigError(f"posterior.sgmcmc_lr = {post.sgmcmc_lr} made a chain diverge (non-"
                          f"finite weights); lower it")
    return Result(unflatten(flat, last), history,
                  {"sgmcmc": {"cycles": cycles, "epochs": epochs, "kept": len(kept),
                              "lr": post.sgmcmc_lr, "exploration": post.exploration,
                              "temperature": post.temperature}})
