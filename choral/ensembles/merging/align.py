"""Permutation alignment before merging, for fine-tunes that did not start from ``theta_0``.

Task vectors only mean something between networks that share a start; members trained
independently have hidden units in arbitrary orders. Each member of each model is permuted to
match the same member of the base (weight matching, :mod:`choral.ensembles.align`), which leaves
the function it computes unchanged.

Examples:
    >>> import torch
    >>> from choral.networks import MLP
    >>> from choral.ensembles.permutations import perm_spec, permute, random_perms
    >>> from choral.ensembles.params import stack
    >>> net = MLP(2, 1, [4]); a = {k: v.detach() for k, v in net.named_parameters()}
    >>> spec = perm_spec(net)
    >>> b = permute(a, spec, random_perms(spec, torch.Generator().manual_seed(1)))
    >>> out = align_to_base(stack([a]), [stack([b])], spec)
    >>> all(torch.equal(out[0][k][0], a[k]) for k in a)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

from choral.ensembles.align import align
from choral.ensembles.params import Params, count, member, stack
from choral.ensembles.permutations import PermSpec

__all__ = ["align_to_base"]


def align_to_base(base: Params, tuned: Sequence[Params], spec: PermSpec) -> list[Params]:
    """Every model of ``tuned`` (each (s, ...)) with member ``i`` aligned to ``base``'s member
    ``i``. A loop over models and members: each is one sequence of assignment problems solved
    by scipy on the CPU, which does not batch."""
    return [stack([align(member(base, i), member(model, i), spec)
                   for i in range(count(base))]) for model in tuned]
