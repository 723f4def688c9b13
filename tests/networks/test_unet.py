"""UNet backbone: shapes, odd grids, gradients, periodic equivariance, stacked = per member."""

import pytest
import torch
from torch.func import functional_call, vmap
from torch.nn import functional

from choral.config import TrainConfig
from choral.ensembles.training import train_members
from choral.errors import ConfigError, DataError
from choral.networks import UNet
from choral.networks.heads import GaussianHead
from choral.networks.members import choose_backend, init_members, member_forward

GRIDS = {1: [(32,), (33,)], 2: [(16, 24), (37, 29)]}


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _net(seed=0, **kwargs):
    torch.manual_seed(seed)
    return UNet(**{"c_in": 2, "c_out": 3, "width": 4, **kwargs}).double()


def _per_member(template, params, x):
    s = x.shape[0]
    return torch.stack([functional_call(template, {k: v[i] for k, v in params.items()}, (x[i],))
                        for i in range(s)])


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_output_has_input_grid(dim, depth):
    net = _net(dim=dim, depth=depth)
    for grid in GRIDS[dim]:
        assert net(_x(2, 2, *grid)).shape == (2, 3, *grid)


def test_odd_grid_is_padded_with_the_padding_mode_then_cropped():
    x = _x(2, 2, 33)
    outs = {}
    for mode in ("zeros", "circular", "reflect"):
        net = _net(dim=1, depth=2, padding_mode=mode)
        outs[mode] = net(x)
        padded = functional.pad(x, (1, 2), mode="constant" if mode == "zeros" else mode)
        torch.testing.assert_close(outs[mode], net(padded)[..., 1:34], rtol=0, atol=1e-12)
    assert (outs["zeros"] - outs["circular"]).abs().max() > 1e-3
    assert (outs["circular"] - outs["reflect"]).abs().max() > 1e-3
    net = _net(dim=2, depth=3, padding_mode="reflect")
    out = net(_x(1, 2, 37, 29))
    assert out.shape == (1, 3, 37, 29) and torch.isfinite(out).all()


def test_bad_inputs_and_settings_are_refused_clearly():
    net = _net(dim=2, depth=3)
    with pytest.raises(DataError, match=r"grid size >= 8; got grid \(37, 5\)"):
        net(_x(1, 2, 37, 5))
    with pytest.raises(DataError, match=r"expects x of shape \(n, 2, g0, g1\); got \(1, 3, 8, 8\)"):
        net(_x(1, 3, 8, 8))
    with pytest.raises(DataError, match=r"\(n, 2, g0, g1\); got \(4, 2, 8\)"):
        net(_x(4, 2, 8))
    reflect = _net(dim=1, depth=2, padding_mode="reflect")
    with pytest.raises(DataError, match=r"grid size >= 8; got grid \(7,\)"):
        reflect(_x(1, 2, 7))
    for bad, match in [({"norm": "batch"}, "norm must be one of"),
                       ({"padding_mode": "replicate"}, "padding_mode must be one of"),
                       ({"kernel_size": 4}, "kernel_size must be one of 1, 3, 5, 7"),
                       ({"dim": 3}, "dim must be one of"),
                       ({"depth": 2, "multipliers": [1, 2]}, "multipliers must be 3 positive")]:
        with pytest.raises(ConfigError, match=match):
            UNet(2, 3, **bad)


@pytest.mark.parametrize("norm", ["group", "instance", "none"])
@pytest.mark.parametrize("sampling", [("conv", "nearest"), ("avgpool", "transpose")])
def test_gradient_reaches_every_parameter(norm, sampling):
    net = _net(dim=2, depth=2, norm=norm, downsample=sampling[0], upsample=sampling[1])
    out = net(_x(2, 2, 16, 12))
    (out * _x(*out.shape, seed=1)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and (p.grad != 0).all(), name


@pytest.mark.parametrize("sampling", [("conv", "nearest"), ("avgpool", "transpose")])
def test_circular_padding_is_equivariant_to_periodic_shifts(sampling):
    kw = {"downsample": sampling[0], "upsample": sampling[1], "depth": 2}
    circ = _net(dim=2, padding_mode="circular", **kw)
    x = _x(2, 2, 16, 12)
    shifted = circ(torch.roll(x, (4, -8), dims=(2, 3)))
    assert torch.allclose(shifted, torch.roll(circ(x), (4, -8), dims=(2, 3)), atol=1e-12)
    circ1 = _net(dim=1, padding_mode="circular", **kw)
    x1 = _x(2, 2, 24)
    assert torch.allclose(circ1(torch.roll(x1, 12, 2)), torch.roll(circ1(x1), 12, 2), atol=1e-12)
    # the check can fail: zero padding (same weights) breaks it
    zeros = _net(dim=2, padding_mode="zeros", **kw)
    zeros.load_state_dict(circ.state_dict())
    diff = zeros(torch.roll(x, (4, -8), dims=(2, 3))) - torch.roll(zeros(x), (4, -8), dims=(2, 3))
    assert diff.abs().max() > 1e-3


CASES = [("group", "zeros", "conv", "nearest", "gelu"),
         ("instance", "circular", "avgpool", "transpose", "relu"),
         ("none", "reflect", "conv", "transpose", "silu"),
         ("group", "circular", "avgpool", "nearest", "tanh")]


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("case", CASES)
def test_forward_stacked_equals_each_member(dim, case):
    norm, mode, down, up, act = case
    template, params = init_members(
        lambda: UNet(2, 3, dim=dim, depth=2, width=4, norm=norm, padding_mode=mode,
                     downsample=down, upsample=up, activation=act, multipliers=[1, 2, 3]),
        [1, 2, 3], torch.float64)
    params = {k: v.requires_grad_(True) for k, v in params.items()}
    x = _x(3, 4, 2, *GRIDS[dim][1])
    stacked, looped = template.forward_stacked(params, x), _per_member(template, params, x)
    assert stacked.shape == (3, 4, 3, *GRIDS[dim][1])
    torch.testing.assert_close(stacked, looped, rtol=0, atol=1e-12)
    weights = _x(*stacked.shape, seed=2)
    g_stacked = torch.autograd.grad((stacked * weights).sum(), list(params.values()))
    g_looped = torch.autograd.grad((looped * weights).sum(), list(params.values()))
    for name, a, b in zip(params, g_stacked, g_looped, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11, msg=name)
    # members differ, so the comparison is not between copies of one network
    assert (stacked[0] - stacked[1]).abs().max() > 1e-3


@pytest.mark.parametrize("dim", [1, 2])
def test_vmap_over_functional_call(dim):
    template, params = init_members(lambda: UNet(2, 3, dim=dim, depth=2, width=4,
                                                 padding_mode="circular"), [4, 5, 6], torch.float64)
    x = _x(3, 2, 2, *GRIDS[dim][1])
    out = vmap(lambda p, xx: functional_call(template, p, (xx,)))(params, x)
    torch.testing.assert_close(out, _per_member(template, params, x), rtol=0, atol=1e-12)


def test_init_members_and_backends():
    template, params = init_members(lambda: UNet(1, 2, dim=1, depth=2, width=4), [7, 8, 9])
    assert not dict(template.named_buffers())
    assert params["head.weight"].shape == (3, 2, 4, 1)
    assert choose_backend(template, "auto") == "stacked"
    again = init_members(lambda: UNet(1, 2, dim=1, depth=2, width=4), [7])[1]
    torch.testing.assert_close(again["head.weight"][0], params["head.weight"][0])
    x = torch.randn(3, 5, 1, 16)
    outs = [member_forward(template, b)(params, x) for b in ("stacked", "vmap", "loop")]
    torch.testing.assert_close(outs[0], outs[2])
    torch.testing.assert_close(outs[1], outs[2])


def test_training_stacked_equals_vmap():
    X, Y = _x(12, 1, 16, seed=3), _x(12, 1, 16, seed=4)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-2)
    results = []
    for backend in ("stacked", "vmap"):
        template, params = init_members(lambda: UNet(1, 2, dim=1, depth=2, width=4), [1, 2],
                                        torch.float64)
        best, _ = train_members(member_forward(template, backend), params, X, Y, None, None, cfg,
                                [5, 6], GaussianHead().loss)
        results.append(best)
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=0, atol=1e-9)
