"""Model soups (Wortsman et al. 2022): fine-tune ingredients from one start, average weights.

``train.ensemble = "soup"`` trains one network for ``soup.start_fraction`` of the epochs, then
fine-tunes ``train.members`` ingredients from it in one stacked run, each with its own
mini-batch seed and learning-rate factor (``soup.lr_factors``, cycled). The soup is the average
of the ingredients' weights: one network, so prediction costs one forward pass.

The greedy soup visits the ingredients from best to worst validation NLL and keeps one only if
the soup's validation NLL goes down; the uniform soup averages them all.

Per-ingredient learning rates without touching the optimiser: ingredient ``i`` trains
``phi_i = theta_i / c_i`` through ``theta_i = c_i phi_i``. Adam's step is invariant to the scale
of the gradient, so ``phi_i`` moves as with the base rate and ``theta_i`` moves ``c_i`` times as
far: a learning rate ``c_i lr`` (up to Adam's epsilon). AdamW's decoupled decay shrinks every
``theta_i`` by the same ``lr * weight_decay`` per step.

Examples:
    >>> import torch
    >>> params = {"w": torch.tensor([[1.0], [2.0], [9.0]])}
    >>> val = {1.0: 0.5, 2.0: 0.6, 9.0: 3.0}   # NLL of the network with weight w, else 0.45
    >>> def score(p):
    ...     return torch.tensor([val.get(w, 0.45) for w in p["w"][:, 0].tolist()])
    >>> keep, trace = greedy_soup(params, score)
    >>> keep.tolist(), [t["accepted"] for t in trace]
    ([True, True, False], [True, True, False])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from choral.ensembles.context import Result, TrainContext
from choral.ensembles.params import Params, average, count
from choral.ensembles.registry import register
from choral.ensembles.training import History, Loss, train_members
from choral.errors import ConfigError
from choral.networks.members import Forward, predict_members

Score = Callable[[Params], Tensor]
"""Validation NLL (s,) of stacked networks (s, ...)."""


def val_nll(forward: Forward, X: Tensor, Y: Tensor, loss: Loss) -> Score:
    """The head's loss of every stacked network on validation data ``X``, ``Y``."""

    def score(params: Params) -> Tensor:
        out = predict_members(forward, params, X)
        return loss(out, Y.expand(out.shape[0], *Y.shape)).double()

    return score


def greedy_soup(ingredients: Params, score: Score) -> tuple[Tensor, list[dict]]:
    """Which ingredients (s,) the greedy soup keeps, and the trace of its decisions.

    Ingredients are tried from best to worst own score; one joins only if the averaged soup's
    score drops strictly below the current soup's.
    """
    own = score(ingredients)
    order = torch.argsort(own).tolist()
    keep = torch.zeros(len(own), dtype=torch.bool)
    keep[order[0]] = True
    best = float(own[order[0]])
    trace = [{"ingredient": order[0], "own_nll": best, "soup_nll": best, "accepted": True}]
    for i in order[1:]:
        trial = keep.clone()
        trial[i] = True
        nll = float(score(average(ingredients, trial))[0])
        accepted = nll < best
        if accepted:
            keep, best = trial, nll
        trace.append({"ingredient": i, "own_nll": float(own[i]), "soup_nll": nll,
                      "accepted": accepted})
    return keep, trace


def _per_member(factors: Tensor, v: Tensor) -> Tensor:
    """``factors`` (s,) shaped to broadcast against ``v`` (s, ...)."""
    return factors.view(-1, *([1] * (v.ndim - 1)))


def _times(params: Params, factors: Tensor) -> Params:
    """``theta = factors * phi``: every member's tensors times its factor."""
    return {k: v * _per_member(factors, v) for k, v in params.items()}


def _scaled(forward: Forward, factors: Tensor) -> Forward:
    """``forward`` of ``theta = factors * phi`` (one factor per member)."""

    def run(phi: Params, x: Tensor) -> Tensor:
        return forward(_times(phi, factors), x)

    return run


def _factors(ctx: TrainContext, s: int) -> Tensor:
    lr = ctx.soup.lr_factors
    first = next(iter(ctx.init_params.values()))
    return torch.tensor([lr[i % len(lr)] for i in range(s)], dtype=first.dtype,
                        device=first.device)


def ingredients(ctx: TrainContext) -> tuple[Params, History, History]:
    """The shared start, then the stacked fine-tuned ingredients (s, ...) and both histories."""
    cfg, s = ctx.train, count(ctx.init_params)
    first = max(1, min(cfg.epochs - 1, round(ctx.soup.start_fraction * cfg.epochs)))
    start, h0 = train_members(ctx.forward, {k: v[:1] for k, v in ctx.init_params.items()},
                              ctx.X, ctx.Y, ctx.X_val, ctx.Y_val,
                              cfg.model_copy(update={"epochs": first}), ctx.batch_seeds[:1],
                              ctx.loss, ctx.on_epoch, checkpoint=ctx.checkpoint,
                              inputs=ctx.inputs)
    c = _factors(ctx, s)
    phi = {k: v.expand(s, *v.shape[1:]) / _per_member(c, v) for k, v in start.items()}
    on_epoch = ctx.on_epoch and (lambda e, *rest: ctx.on_epoch(first + e, *rest))
    phi, h1 = train_members(_scaled(ctx.forward, c), phi, ctx.X, ctx.Y, ctx.X_val, ctx.Y_val,
                            cfg.model_copy(update={"epochs": max(1, cfg.epochs - first)}),
                            ctx.batch_seeds, ctx.loss, on_epoch, checkpoint=ctx.checkpoint,
                            inputs=ctx.inputs)
    return _times(phi, c), h0, h1


@register("soup")
def soup(ctx: TrainContext) -> Result:
    """Greedy (or uniform, ``soup.greedy = false``) soup of fine-tuned ingredients: S = 1."""
    if ctx.X_val is None:
        raise ConfigError("train.ensemble = 'soup' chooses ingredients on validation data: "
                          "train.val_fraction must be > 0; got 0")
    parts, h0, h1 = ingredients(ctx)
    score = val_nll(ctx.forward, ctx.X_val, ctx.Y_val, ctx.loss)
    keep, trace = greedy_soup(parts, score)
    soups = {"greedy": average(parts, keep), "uniform": average(parts)}
    soup_nll = {kind: float(score(net)[0]) for kind, net in soups.items()}
    kind = "greedy" if ctx.soup.greedy else "uniform"
    chosen, nll = soups[kind], soup_nll[kind]
    history = History(epochs_run=h0.epochs_run + h1.epochs_run,
                      best_epoch=[h0.epochs_run + max(h1.best_epoch)], best_val_nll=[nll],
                      train_nll=[sum(h1.train_nll) / len(h1.train_nll)])
    info = {"kind": kind,
            "lr_factors": ctx.soup.lr_factors, "start_epochs": h0.epochs_run,
            "ingredient_val_nll": h1.best_val_nll, "ingredient_best_epoch": h1.best_epoch,
            "greedy": trace, "accepted": keep.nonzero().flatten().tolist(),
            "greedy_val_nll": soup_nll["greedy"], "uniform_val_nll": soup_nll["uniform"],
            "val_nll": nll}
    records = {"soup": info}
    if ctx.soup.save_ingredients:
        records["soup_ingredients"] = parts
    return Result(chosen, history, records)
