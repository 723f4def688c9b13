"""Weight matching: recovers a hidden permutation, and lowers the loss barrier between members."""

import torch

from choral.config import TrainConfig
from choral.ensembles.align import (
    align,
    align_members,
    barrier,
    merge,
    path_losses,
    weight_matching,
)
from choral.ensembles.params import member, stack
from choral.ensembles.permutations import perm_spec, permute, random_perms
from choral.ensembles.training import train_members
from choral.networks import MLP, UNet
from choral.networks.heads import GaussianHead
from choral.networks.members import init_members, member_forward


def test_recovers_a_hidden_permutation_of_a_unet():
    torch.manual_seed(0)
    net = UNet(1, 2, dim=1, depth=2, width=4, norm="none", upsample="transpose").double()
    a = {k: v.detach() for k, v in net.named_parameters()}
    spec = perm_spec(net)
    b = permute(a, spec, random_perms(spec, torch.Generator().manual_seed(5)))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    aligned = permute(b, spec, weight_matching(a, b, spec))
    assert all(torch.equal(aligned[k], a[k]) for k in a)


def test_alignment_lowers_the_barrier_between_independent_members():
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(256, 2, generator=gen, dtype=torch.float64) * 4 - 2
    Y = (torch.sin(2 * X[:, :1]) * X[:, 1:] + 0.05 * torch.randn(256, 1, generator=gen,
                                                                  dtype=torch.float64))
    template, init = init_members(lambda: MLP(2, 2, [256]), seeds=[1, 2], dtype=torch.float64)
    forward = member_forward(template, "stacked")
    loss = GaussianHead().loss
    cfg = TrainConfig(epochs=150, batch_size=64, lr=1e-2, weight_decay=0.0)
    params, _ = train_members(forward, init, X, Y, None, None, cfg, [3, 4], loss)
    a, b = member(params, 0), member(params, 1)
    spec = perm_spec(template)
    b_aligned = align(a, b, spec)
    alphas = torch.linspace(0, 1, 11, dtype=torch.float64)
    before = path_losses(forward, a, b, X, Y, loss, alphas)
    after = path_losses(forward, a, b_aligned, X, Y, loss, alphas)
    torch.testing.assert_close(after[[0, -1]], before[[0, -1]])  # same endpoints' functions
    assert barrier(before, alphas) > 0.5  # a real barrier to lower
    assert barrier(after, alphas) < 0.5 * barrier(before, alphas)
    mse = path_losses(forward, a, b, X, Y, _mean_sq_error, alphas)
    mse_aligned = path_losses(forward, a, b_aligned, X, Y, _mean_sq_error, alphas)
    assert barrier(mse_aligned, alphas) < 0.5 * barrier(mse, alphas)


def _mean_sq_error(out, y):
    return ((out[..., :1] - y) ** 2).mean(dim=(1, 2))


def test_align_members_keeps_every_member_function():
    template, params = init_members(lambda: MLP(3, 2, [16, 8]), seeds=[0, 1, 2],
                                    dtype=torch.float64)
    forward = member_forward(template, "stacked")
    x = torch.randn(3, 20, 3, dtype=torch.float64)
    aligned = align_members(params, perm_spec(template))
    torch.testing.assert_close(forward(aligned, x), forward(params, x), rtol=1e-12, atol=1e-12)
    assert torch.equal(aligned["layers.0.weight"][0], params["layers.0.weight"][0])
    assert not torch.equal(aligned["layers.0.weight"][1], params["layers.0.weight"][1])


def test_merging_permuted_copies_gives_back_the_network():
    """Naive averaging of permuted copies breaks the network; aligned merging restores it."""
    torch.manual_seed(2)
    net = MLP(3, 2, [12, 12]).double()
    a = {k: v.detach() for k, v in net.named_parameters()}
    spec = perm_spec(net)
    gen = torch.Generator().manual_seed(0)
    params = stack([a, *(permute(a, spec, random_perms(spec, gen)) for _ in range(3))])
    merged = merge(params, spec)
    for k in a:
        torch.testing.assert_close(merged[k][0], a[k], rtol=1e-12, atol=1e-12)
    naive = {k: v.mean(0) for k, v in params.items()}
    assert (naive["layers.0.weight"] - a["layers.0.weight"]).abs().max() > 0.1
