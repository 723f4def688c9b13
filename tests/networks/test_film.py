"""FiLM conditioning of the U-Net: identity at initialisation (equals the unconditioned network),
a closed form for a hand-set modulation, the stacked forward against each member, the config."""

import pytest
import torch

from choral.config import Config
from choral.errors import ConfigError
from choral.networks import build_member
from choral.networks.members import init_members
from choral.networks.unet import UNet

GRIDS = {1: (24,), 2: (12, 10)}


def inputs(n, c, k, grid, seed=0):
    """Fields (n, c, *grid) followed by k condition channels, constant over the grid."""
    g = torch.Generator().manual_seed(seed)
    field = torch.randn(n, c, *grid, generator=g, dtype=torch.float64)
    cond = torch.randn(n, k, *[1] * len(grid), generator=g, dtype=torch.float64)
    return torch.cat([field, cond.expand(n, k, *grid)], dim=1)


@pytest.mark.parametrize("dim", [1, 2])
def test_fresh_film_equals_the_unconditioned_network(dim):
    torch.manual_seed(0)
    plain = UNet(2, 3, dim=dim, depth=2, width=4).double()
    film = UNet(2 + 2, 3, dim=dim, depth=2, width=4, conditions=2).double()
    missing = film.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["film.0.bias", "film.0.weight", "film.2.bias", "film.2.weight"]
    x = inputs(5, 2, 2, GRIDS[dim])
    torch.testing.assert_close(film(x), plain(x[:, :2]), rtol=0, atol=0)
    with torch.no_grad():  # a trained FiLM changes the output, by the conditions
        film.film[2].weight.normal_()
    assert (film(x) - plain(x[:, :2])).abs().max() > 1e-3


def test_hand_set_modulation_has_its_closed_form():
    net = UNet(1 + 1, 2, dim=1, depth=1, width=4, conditions=1).double()
    channels = net.film_channels  # encoder 4, bottleneck 8, decoder 4
    assert channels == [4, 8, 4]
    with torch.no_grad():  # last level: gamma = -1, beta = 0 -> its output is zero
        net.film[2].bias[2 * (4 + 8):2 * (4 + 8) + 4] = -1.0
    out = net(inputs(3, 1, 1, (16,)))
    expected = net.head.bias.view(1, 2, 1).expand(3, 2, 16)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dim", [1, 2])
def test_stacked_forward_equals_each_member(dim):
    template, params = init_members(
        lambda: UNet(3, 2, dim=dim, depth=2, width=4, conditions=2, padding_mode="circular"),
        [1, 2, 3], torch.float64)
    g = torch.Generator().manual_seed(1)
    params["film.2.weight"] = torch.randn(params["film.2.weight"].shape, generator=g,
                                          dtype=torch.float64)
    x = torch.stack([inputs(4, 1, 2, GRIDS[dim], seed=k) for k in range(3)])
    stacked = template.forward_stacked(params, x)
    for k in range(3):
        template_k = UNet(3, 2, dim=dim, depth=2, width=4, conditions=2,
                          padding_mode="circular").double()
        template_k.load_state_dict({name: v[k] for name, v in params.items()})
        torch.testing.assert_close(stacked[k], template_k(x[k]), rtol=0, atol=1e-12)
    assert (stacked[0] - stacked[1]).abs().max() > 1e-3


def test_config_and_errors():
    cfg = Config.from_dict({"model": {"backbone": "unet", "conditions": 1,
                                      "unet": {"depth": 1, "width": 4}}})
    assert build_member(cfg.model, (3, 16), (1, 16)).conditions == 1
    fno = cfg.updated(**{"model.backbone": "fno"})
    with pytest.raises(ConfigError, match="conditions"):
        build_member(fno.model, (3, 16), (1, 16))
    with pytest.raises(ConfigError, match="conditions"):
        UNet(1, 1, dim=1, conditions=1)  # no field channel left
