"""Weight matching (Ainsworth et al., Git Re-Basin) and the loss barrier along a linear path.

:func:`weight_matching` permutes network ``b``'s hidden units so that its weights are as close as
possible to ``a``'s: coordinate descent over the unit groups of a :class:`PermSpec`, each step a
linear assignment (``scipy.optimize.linear_sum_assignment``) maximising
``sum_entries <W_a, P W_b>`` with the other groups held fixed. The aligned ``b`` computes the
same function, but the straight line from ``a`` to it usually crosses a much lower loss barrier.

Examples:
    >>> import torch
    >>> from choral.networks import MLP
    >>> from choral.ensembles.permutations import perm_spec, permute, random_perms
    >>> net = MLP(2, 1, [5]); a = {k: v.detach() for k, v in net.named_parameters()}
    >>> spec = perm_spec(net)
    >>> b = permute(a, spec, random_perms(spec, torch.Generator().manual_seed(0)))
    >>> perms = weight_matching(a, b, spec)
    >>> all(torch.equal(permute(b, spec, perms)[k], a[k]) for k in a)
    True
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from choral.ensembles.params import Params, average, count, lerp, member, stack
from choral.ensembles.permutations import PermSpec, identity, permute
from choral.ensembles.soup import val_nll
from choral.ensembles.training import Loss
from choral.networks.members import Forward


def _rows(w: Tensor, axis: int, start: int, size: int) -> Tensor:
    """The group's units of ``w`` as rows: (size, everything else), in float64."""
    return w.narrow(axis, start, size).movedim(axis, 0).reshape(size, -1).double()


def _similarity(a: Params, b: Params, spec: PermSpec, group: str) -> Tensor:
    """(size, size): entry (i, j) = similarity of ``a``'s unit i and ``b``'s unit j."""
    size = spec.sizes[group]
    sim = torch.zeros(size, size, dtype=torch.float64)
    for name, axis, start in spec.axes[group]:
        sim += _rows(a[name], axis, start, size) @ _rows(b[name], axis, start, size).T
    return sim


def weight_matching(a: Params, b: Params, spec: PermSpec, max_sweeps: int = 100,
                    seed: int = 0) -> dict[str, Tensor]:
    """Permutations of ``b``'s groups that bring it closest to ``a`` (single networks).

    Sweeps the groups in a random order until no assignment changes (or ``max_sweeps``).
    """
    perms = identity(spec)
    rng = np.random.default_rng(seed)
    groups = list(spec.sizes)
    for _ in range(max_sweeps):
        changed = False
        for g in rng.permutation(groups):
            others = permute(b, spec, perms, skip=g)
            _, cols = linear_sum_assignment(_similarity(a, others, spec, g).numpy(),
                                            maximize=True)
            new = torch.as_tensor(cols)
            changed |= not torch.equal(new, perms[g])
            perms[g] = new
        if not changed:
            break
    return perms


def align(a: Params, b: Params, spec: PermSpec, **kwargs) -> Params:
    """``b`` with its units permuted to match ``a`` (same function as ``b``)."""
    return permute(b, spec, weight_matching(a, b, spec, **kwargs))


def align_members(params: Params, spec: PermSpec, **kwargs) -> Params:
    """Stacked members (s, ...) each permuted to match member 0, ready to be averaged.

    Every member computes the same function as before; one assignment problem per member pair.
    """
    ref = member(params, 0)
    return stack([ref, *(align(ref, member(params, i), spec, **kwargs)
                         for i in range(1, count(params)))])


def merge(params: Params, spec: PermSpec, **kwargs) -> Params:
    """One network (1, ...): the average of the members after aligning them to member 0."""
    return average(align_members(params, spec, **kwargs))


def path_losses(forward: Forward, a: Params, b: Params, X: Tensor, Y: Tensor, loss: Loss,
                alphas: Tensor) -> Tensor:
    """Loss (len(alphas),) of the networks ``(1 - alpha) a + alpha b``, all in one stacked pass."""
    return val_nll(forward, X, Y, loss)(lerp(a, b, alphas))


def barrier(losses: Tensor, alphas: Tensor) -> float:
    """Largest rise of the path's loss above the straight line between its endpoint losses.

    >>> barrier(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([0.0, 0.5, 1.0]))
    1.5
    """
    alphas = alphas.to(losses.dtype)
    line = (1 - alphas) * losses[0] + alphas * losses[-1]
    return float((losses - line).max())
