"""Permuting hidden units or channels leaves the network's function exactly unchanged."""

import pytest
import torch
from torch.func import functional_call

from choral.ensembles.permutations import identity, perm_spec, permute, random_perms
from choral.errors import ConfigError
from choral.networks import MLP, UNet


def _check_invariant(net, x, seed=0):
    net = net.double()
    params = {k: v.detach() for k, v in net.named_parameters()}
    spec = perm_spec(net)
    perms = random_perms(spec, torch.Generator().manual_seed(seed))
    moved = permute(params, spec, perms)
    changed = [k for k in params if not torch.equal(params[k], moved[k])]
    assert changed, "the permutation must actually move weights"
    # every parameter except the output layer's bias is moved by some group
    covered = {name for entries in spec.axes.values() for name, _, _ in entries}
    y0 = functional_call(net, params, (x,))
    y1 = functional_call(net, moved, (x,))
    torch.testing.assert_close(y1, y0, rtol=1e-12, atol=1e-12)
    return covered, params


def test_mlp_permutation_keeps_function():
    torch.manual_seed(0)
    net = MLP(3, 2, [7, 5, 4], activation="tanh")
    covered, params = _check_invariant(net, torch.randn(11, 3, dtype=torch.float64))
    assert set(params) - covered == {"layers.3.bias"}


@pytest.mark.parametrize("down,up,norm,dim", [("conv", "nearest", "none", 2),
                                              ("avgpool", "transpose", "instance", 1),
                                              ("conv", "transpose", "none", 1)])
def test_unet_permutation_keeps_function(down, up, norm, dim):
    torch.manual_seed(1)
    net = UNet(2, 3, dim=dim, depth=2, width=4, norm=norm, activation="gelu",
               downsample=down, upsample=up)
    x = torch.randn(3, 2, *([12] * dim), dtype=torch.float64)
    covered, params = _check_invariant(net, x)
    assert set(params) - covered == {"head.bias"}


def test_inverse_round_trip():
    net = MLP(2, 1, [6])
    params = dict(net.named_parameters())
    spec = perm_spec(net)
    perms = random_perms(spec, torch.Generator().manual_seed(3))
    inverse = {g: torch.argsort(p) for g, p in perms.items()}
    back = permute(permute(params, spec, perms), spec, inverse)
    assert all(torch.equal(back[k], params[k]) for k in params)
    assert all(torch.equal(permute(params, spec, identity(spec))[k], params[k]) for k in params)


def test_groupnorm_unet_is_refused():
    with pytest.raises(ConfigError, match="norm"):
        perm_spec(UNet(1, 1, dim=1, depth=1, width=8, norm="group"))
