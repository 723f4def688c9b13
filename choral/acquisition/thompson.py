"""Thompson sampling with member-coherent function draws, one draw per batch slot.

A draw is one member's *latent* function: member ``i`` is drawn with probability ``w_i`` (its
mixture weight) and its mean ``mu_i`` (n, p = 1) over all candidates is the sampled objective.
The members' aleatoric noise is left out on purpose: Thompson sampling asks where the optimum of
the function lies, and the noise of one observation does not move it (adding independent noise
per candidate would only randomise the argmax among near-ties). With an ``objective`` the member
function is the member's expected objective (:func:`~choral.acquisition.scores.members_of`).

Batch Thompson (Kandasamy et al. 2018): slot ``j`` of a batch of ``k`` draws its own member and
takes the best candidate under that member's function among those not yet taken, so a batch
never repeats a candidate; slots that draw the same member take its next-best candidates.
Ensembles with many sampled networks (``swag``, ``laplace``, ``prior``) give more distinct draws.

Examples:
    >>> import torch
    >>> from choral.distributions import Members
    >>> means = torch.tensor([[[0.0], [1.0], [2.0]]], dtype=torch.float64)  # one member
    >>> m = Members(means, torch.ones_like(means), torch.ones(1, dtype=torch.float64))
    >>> thompson_batch(m, 2, maximize=True, seed=0).tolist()  # its top two
    [2, 1]
"""

from __future__ import annotations

import torch
from torch import Tensor

from choral.checks import check_int
from choral.distributions import Members
from choral.errors import DataError

__all__ = ["draw_members", "thompson_batch"]


def draw_members(weights: Tensor, k: int, seed: int) -> Tensor:
    """``k`` member indices (k,) drawn with replacement with probabilities ``weights`` (s,).

    Drawn on the CPU from ``seed`` (the same draws on every device).

    >>> draw_members(torch.tensor([0.0, 1.0]), 3, seed=0).tolist()
    [1, 1, 1]
    """
    gen = torch.Generator().manual_seed(int(seed))
    probs = weights.detach().to("cpu", torch.float64)
    return torch.multinomial(probs, k, replacement=True, generator=gen)


def thompson_batch(m: Members, k: int, *, maximize: bool = False, seed: int = 0) -> Tensor:
    """``k`` distinct candidate indices (k,) by batch Thompson sampling on members ``m``.

    ``m`` holds member means (s, n, 1) over ``n`` candidates and weights (s,); slot ``j`` takes
    the best untaken candidate under the member function drawn for it (the largest mean when
    ``maximize``, else the smallest).
    """
    if m.means.ndim != 3 or m.means.shape[-1] != 1:
        raise DataError(f"thompson needs one output value per sample, means (s, n, 1); got "
                        f"shape {tuple(m.means.shape)}: pass objective= to reduce the outputs")
    n = m.means.shape[1]
    k = check_int(k, "k", minimum=1, maximum=n)
    if m.weights.ndim != 1:
        raise DataError(f"thompson needs one weight per member (s,); got weights shaped "
                        f"{tuple(m.weights.shape)}")
    drawn = draw_members(m.weights, k, seed).to(m.means.device)
    values = m.means[drawn, :, 0]  # (k, n): the function of slot j's member
    lowest = -torch.finfo(values.dtype).max  # below every value, above a taken candidate
    values = torch.nan_to_num(values if maximize else -values, nan=lowest, neginf=lowest)
    taken = torch.zeros(n, dtype=torch.bool, device=values.device)
    picks = torch.empty(k, dtype=torch.long, device=values.device)
    for j in range(k):  # sequential only because slots must not repeat a candidate
        idx = torch.where(taken, -torch.inf, values[j]).argmax()
        picks[j] = idx
        taken[idx] = True
    return picks
