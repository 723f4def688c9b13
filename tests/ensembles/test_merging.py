"""Merging: every method against a hand computation on small state dicts, and against
mergekit's definitions (re-implemented here tensor by tensor, member by member, as mergekit
states them) where they overlap."""

import numpy as np
import pytest
import torch

from choral.ensembles.merging import (
    add,
    balanced,
    breadcrumbs,
    consensus,
    pack_masks,
    regime_params,
    tall_masks,
    task_arithmetic,
    task_vectors,
    ties,
    trim,
    unpack_masks,
)
from choral.ensembles.merging.align import align_to_base
from choral.ensembles.params import stack
from choral.ensembles.permutations import perm_spec, permute, random_perms
from choral.errors import ConfigError, DataError
from choral.networks import MLP

T64 = dict(dtype=torch.float64)
# three regimes, two members, one 2x2 tensor each (flattened row-major below)
TAU = torch.tensor([[[4.0, -1.0, 0.5, -3.0], [1.0, 2.0, 3.0, 4.0]],
                    [[-2.0, 5.0, 0.1, -1.0], [-1.0, -2.0, -3.0, 0.5]],
                    [[1.0, -6.0, 2.0, 0.2], [0.1, 0.2, 5.0, -6.0]]], **T64).reshape(3, 2, 2, 2)
BASE = {"w": torch.arange(8, **T64).reshape(2, 2, 2)}


def _taus():
    return task_vectors(BASE, [{"w": BASE["w"] + TAU[t]} for t in range(3)])


def test_task_vectors_and_task_arithmetic_by_hand():
    taus = _taus()
    assert torch.allclose(taus["w"], TAU, atol=1e-12)
    merged = task_arithmetic(taus, weights=[1.0, 0.5, 2.0])["w"].reshape(2, 4)
    expected = torch.tensor([[4 - 1 + 2, -1 + 2.5 - 12, 0.5 + 0.05 + 4, -3 - 0.5 + 0.4],
                             [1 - 0.5 + 0.2, 2 - 1 + 0.4, 3 - 1.5 + 10, 4 + 0.25 - 12]], **T64)
    assert torch.allclose(merged, expected, atol=1e-12)
    theta = add(BASE, {"w": expected.reshape(2, 2, 2)}, scale=0.5)["w"]
    assert torch.allclose(theta, BASE["w"] + 0.5 * expected.reshape(2, 2, 2), atol=1e-12)


def test_ties_by_hand():
    taus = _taus()
    kept = trim(taus, 0.5)["w"].reshape(3, 2, 4)
    assert torch.allclose(kept[:, 0], torch.tensor([[4, 0, 0, -3], [-2, 5, 0, 0],
                                                    [0, -6, 2, 0]], **T64), atol=1e-12)
    # member 0: summed signs +, -, +, -; agreeing means 4, -6, 2, -3
    # member 1: trimmed [0 0 3 4], [0 -2 -3 0], [0 0 5 -6]: sums 0 (+), -2, 5, -2; position 0
    # has no non-zero entry (sign 0 agrees with nothing), position 2 averages 3 and 5
    merged = ties(taus, density=0.5)["w"].reshape(2, 4)
    expected = torch.tensor([[4, -6, 2, -3], [0, -2, 4, -6]], **T64)
    assert torch.allclose(merged, expected, atol=1e-12)


def test_breadcrumbs_by_hand():
    # density 0.5, gamma 0.25 of 4 entries: drop the largest and the smallest magnitude
    merged = breadcrumbs(_taus(), density=0.5, gamma=0.25)["w"].reshape(2, 4)
    # kept: [0 -1 0 -3], [-2 0 0 -1], [1 0 2 0] and [0 2 3 0], [-1 -2 0 0], [0 .2 5 0]
    expected = torch.tensor([[0 - 2 + 1, -1 + 0 + 0, 0 + 0 + 2, -3 - 1 + 0],
                             [0 - 1 + 0, 2 - 2 + 0.2, 3 + 0 + 5, 0]], **T64)
    assert torch.allclose(merged, expected, atol=1e-12)


def test_tall_masks_consensus_and_regimes_by_hand():
    taus = {"w": TAU[:, :1]}                                  # member 0 only
    merged = task_arithmetic(taus)                            # [3, -2, 2.6, -3.8]
    masks = tall_masks(taus, merged, [1.0, 0.5, 1.0])["w"].reshape(3, 4)
    # |tau_t| >= lambda_t |merged - tau_t|:
    # t=0: |4,1,.5,3| vs |-1,-1,2.1,-.8|; t=1: |2,5,.1,1| vs .5 |5,-7,2.5,-2.8|;
    # t=2: |1,6,2,.2| vs |2,4,.6,-4|
    assert masks.int().tolist() == [[1, 1, 0, 1], [0, 1, 0, 0], [0, 1, 1, 0]]
    cons = consensus(taus, merged, [1.0, 0.5, 1.0], k=2)["w"].reshape(4)
    assert torch.allclose(cons, torch.tensor([0.0, -2.0, 0.0, 0.0], **T64), atol=1e-12)
    full = tall_masks(taus, merged, [1.0, 0.5, 1.0])
    theta0 = regime_params({"w": BASE["w"][:1]}, merged, full, 0)["w"].reshape(4)
    assert torch.allclose(theta0, torch.tensor([0 + 3, 1 - 2, 2, 3 - 3.8], **T64), atol=1e-12)
    assert consensus(taus, merged, [1.0, 0.5, 1.0], k=4)["w"].abs().sum() == 0


def test_balanced_by_hand():
    taus = {"w": torch.tensor([[[3.0, 4.0]], [[0.0, 2.0]], [[0.0, 0.0]]], **T64)}
    # norms 5, 2, 0; mean 7/3; the zero vector stays zero and still counts in the mean of T
    a, b = torch.tensor([3.0, 4.0], **T64), torch.tensor([0.0, 2.0], **T64)
    expected = (7 / 15 * a + 7 / 6 * b) / 3
    assert torch.allclose(balanced(taus)["w"][0], expected, atol=1e-12)
    same = {"w": torch.tensor([[[3.0, 4.0]], [[0.0, 5.0]]], **T64)}   # equal norms: the soup
    assert torch.allclose(balanced(same)["w"], same["w"].mean(0), atol=1e-12)


def test_pack_masks_matches_numpy_packbits_and_round_trips():
    gen = torch.Generator().manual_seed(0)
    like = {"a": torch.zeros(3, 5, 7), "b": torch.zeros(3, 2)}     # 35 and 2 bits per member
    masks = {k: torch.rand(4, *v.shape, generator=gen) > 0.5 for k, v in like.items()}
    packed = pack_masks(masks)
    for k, m in masks.items():
        ref = np.packbits(m.reshape(4, -1).numpy(), axis=1)
        assert np.array_equal(packed[k].numpy(), ref)
        assert packed[k].numel() == 4 * -(-like[k].numel() // 8)
    back = unpack_masks(packed, like, 4)
    assert all(torch.equal(back[k], masks[k]) for k in masks)
    with pytest.raises(DataError, match="regimes"):
        unpack_masks(packed, like, 3)


# ---- mergekit's definitions (generalized_task_arithmetic.py and sparsify.py), per tensor -----
def _mk_magnitude(t, density):
    k = int(density * t.numel())
    mask = torch.zeros_like(t)
    mask.view(-1)[torch.argsort(t.abs().view(-1), descending=True)[:k]] = 1
    return t * mask


def _mk_outliers(t, density, gamma):
    n = t.numel()
    target, n_top = int(density * n), int(gamma * n)
    n_bot = n - target - n_top
    if n_bot < 0:
        n_top, n_bot = n_top + n_bot, 0
    idx = torch.sort(t.abs().view(-1)).indices
    mask = torch.zeros_like(t)
    mask.view(-1)[idx[n_bot:-n_top]] = 1
    return t * mask


def _mk_merge(base, models, weights, sparsify, consensus_sum, normalize):
    deltas = torch.stack([sparsify(m - base) for m in models])
    w = torch.tensor(weights, dtype=deltas.dtype).view(-1, *([1] * base.ndim))
    wd = deltas * w
    if consensus_sum:
        majority = (wd.sum(0) >= 0).to(wd.dtype) * 2 - 1
        mask = deltas.sign() == majority
        mixed, divisor = (wd * mask).sum(0), (w * mask).sum(0)
        divisor[divisor == 0] = 1
    else:
        mixed, divisor = wd.sum(0), w.sum(0)
    return base + (mixed / divisor if normalize else mixed)


@pytest.mark.parametrize("method", ["ties", "breadcrumbs", "task_arithmetic"])
def test_agrees_with_mergekit_definitions(method):
    gen = torch.Generator().manual_seed(1)
    base = {"w": torch.randn(3, 6, 5, generator=gen, **T64),
            "b": torch.randn(3, 6, generator=gen, **T64)}
    models = [{k: v + torch.randn(v.shape, generator=gen, **T64) for k, v in base.items()}
              for _ in range(4)]
    weights = [1.0, 0.5, 2.0, 0.7]
    taus = task_vectors(base, models)
    if method == "ties":
        merged = ties(taus, 0.3, weights)
        spars, cons, norm = (lambda t: _mk_magnitude(t, 0.3)), True, True
    elif method == "breadcrumbs":
        merged = breadcrumbs(taus, 0.6, 0.2, weights)   # int(gamma P) > 0 for both tensors
        spars, cons, norm = (lambda t: _mk_outliers(t, 0.6, 0.2)), False, False
    else:
        merged = task_arithmetic(taus, weights)
        spars, cons, norm = (lambda t: t), False, False
    ours = add(base, merged)
    for k in base:
        for i in range(3):   # mergekit merges one network's tensor at a time
            ref = _mk_merge(base[k][i], [m[k][i] for m in models], weights, spars, cons, norm)
            assert torch.allclose(ours[k][i], ref, atol=1e-12)


def test_breadcrumbs_without_outliers_differs_from_mergekit_as_documented():
    t = torch.tensor([0.1, -5.0, 0.3, 1.0], **T64)
    assert torch.equal(_mk_outliers(t, 0.5, 0.1), torch.zeros(4, **T64))   # indices[n:-0]
    ours = breadcrumbs({"w": t.view(1, 1, 4)}, 0.5, 0.1)["w"].view(4)
    assert torch.equal(ours, torch.tensor([0.0, -5.0, 0.0, 1.0], **T64))   # the two largest


def test_align_to_base_recovers_task_vectors_of_a_permuted_start():
    torch.manual_seed(0)
    nets = [MLP(3, 2, [8, 6]).double() for _ in range(2)]
    spec = perm_spec(nets[0])
    base = stack([{k: v.detach() for k, v in n.named_parameters()} for n in nets])
    gen = torch.Generator().manual_seed(2)
    delta = {k: 1e-3 * torch.randn(v.shape, generator=gen, **T64) for k, v in base.items()}
    tuned = stack([permute({k: base[k][i] + delta[k][i] for k in base}, spec,
                           random_perms(spec, gen)) for i in range(2)])
    raw = task_vectors(base, [tuned])
    aligned = task_vectors(base, align_to_base(base, [tuned], spec))
    assert max(float((raw[k][0] - delta[k]).abs().max()) for k in base) > 0.1
    assert all(torch.allclose(aligned[k][0], delta[k], atol=1e-12) for k in base)


def test_bad_arguments_are_named():
    taus = _taus()
    with pytest.raises(ConfigError, match="density"):
        ties(taus, 1.5)
    with pytest.raises(DataError, match="one per regime"):
        task_arithmetic(taus, [1.0, 2.0])
    with pytest.raises(DataError, match="shape"):
        task_vectors(BASE, [{"w": torch.zeros(2, 3)}])


def test_balanced_with_one_regime_is_wiseft():
    from choral.ensembles.wiseft import interpolate

    gen = torch.Generator().manual_seed(3)
    base = {"w": torch.randn(2, 4, 3, generator=gen, **T64)}
    tuned = {"w": base["w"] + torch.randn(2, 4, 3, generator=gen, **T64)}
    got = add(base, balanced(task_vectors(base, [tuned])), 0.3)["w"]
    assert torch.allclose(got, interpolate(base, tuned, 0.3)["w"], atol=1e-12)
