"""FNO backbone: equal to neuraloperator's own FNO, real parameters, stacked = one at a time."""

import pytest
import torch
from neuralop.models import FNO

from choral.networks import FNOBackbone
from choral.networks.members import choose_backend, init_members, member_forward


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dim, grid, padding", [(1, (16,), 0.0), (2, (12, 10), 0.0),
                                                (2, (17, 17), 0.1)])
def test_equals_neuraloperator_fno(dim, grid, padding):
    """The same seed gives neuraloperator's FNO (its in-place spectral convolution, complex
    weights) and ours; their outputs agree on the training grid and on a finer one."""
    torch.manual_seed(3)
    ours = FNOBackbone(2, 3, dim, modes=6, width=8, layers=2, domain_padding=padding)
    torch.manual_seed(3)
    ref = FNO(n_modes=(6,) * dim, in_channels=2, out_channels=3, hidden_channels=8, n_layers=2,
              domain_padding=padding or None)
    for g in (grid, tuple(2 * n for n in grid)):
        x = _x(4, 2, *g)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_parameters_are_real_and_backward_reaches_spectral_weights():
    net = FNOBackbone(1, 1, 2, modes=4, width=4, layers=1)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    net(_x(2, 1, 8, 8)).square().sum().backward()
    spectral = [p for name, p in net.named_parameters() if "convs" in name and p.ndim > 3]
    assert spectral and all(p.grad is not None and p.grad.abs().sum() > 0 for p in spectral)


@pytest.mark.parametrize("backend", ["vmap", "loop"])
def test_stacked_members_equal_one_module_each(backend):
    """Members stacked and run through vmap (or the loop) give what each member's own module
    gives on its own inputs."""
    seeds = [5, 7, 11]

    def make():
        return FNOBackbone(1, 2, 2, modes=4, width=6, layers=2).double()

    template, params = init_members(make, seeds, dtype=torch.float64)
    x = _x(3, 4, 1, 8, 8).double()
    out = member_forward(template, backend)(params, x)
    for i, seed in enumerate(seeds):
        torch.manual_seed(seed)
        torch.testing.assert_close(out[i], make()(x[i]), rtol=1e-12, atol=1e-12)


def test_auto_backend_is_the_measured_faster_one():
    one, _ = init_members(lambda: FNOBackbone(1, 1, 1, modes=4, width=4, layers=1), [0, 1])
    two, _ = init_members(lambda: FNOBackbone(1, 1, 2, modes=4, width=4, layers=1), [0, 1])
    assert choose_backend(one, "auto", probe=_x(2, 1, 16)) == "vmap"
    assert choose_backend(two, "auto", probe=_x(2, 1, 8, 8)) == "loop"
    assert choose_backend(two, "vmap") == "vmap"
