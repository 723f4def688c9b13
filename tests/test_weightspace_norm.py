"""Normalisation statistics recomputed after averaging, against statistics computed by hand."""

import torch
from torch import nn
from torch.func import stack_module_state

from choral.weightspace.norm import has_norm_buffers, recompute_norm_stats


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)).double()


def test_recompute_matches_the_batch_statistics_by_hand():
    model = net()
    model[1].running_mean.fill_(7.0)  # stale statistics that must be replaced, not blended
    model[1].running_var.fill_(9.0)
    batches = list(torch.randn(60, 3, generator=torch.Generator().manual_seed(1),
                               dtype=torch.float64).split(20))
    model.eval()
    recompute_norm_stats(model, batches)
    assert not model.training  # the mode is kept
    with torch.no_grad():
        pre = [model[0](b) for b in batches]
    # cumulative average over equal batches: mean of batch means, mean of unbiased batch vars
    mean = torch.stack([p.mean(0) for p in pre]).mean(0)
    var = torch.stack([p.var(0, unbiased=True) for p in pre]).mean(0)
    torch.testing.assert_close(model[1].running_mean, mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model[1].running_var, var, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mean, torch.cat(pre).mean(0), rtol=1e-12, atol=1e-12)


def test_an_averaged_network_gets_statistics_of_its_own_weights():
    """SWA on a BatchNorm network: average two networks' weights, then recompute."""
    a, b = net(), net()
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    stacked, _ = stack_module_state([a, b])
    avg = net()
    avg.load_state_dict({k: v.mean(0) for k, v in stacked.items()}, strict=False)
    torch.testing.assert_close(avg[0].bias, (a[0].bias + b[0].bias).detach() / 2)
    x = torch.randn(50, 3, dtype=torch.float64)
    recompute_norm_stats(avg, [x])
    with torch.no_grad():
        torch.testing.assert_close(avg[1].running_mean, avg[0](x).mean(0))
        torch.testing.assert_close(avg[1].running_var, avg[0](x).var(0))
        assert not torch.allclose(avg[1].running_mean, a[0](x).mean(0))


def test_networks_without_buffers_are_left_alone():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    before = [p.clone() for p in model.parameters()]
    assert not has_norm_buffers(model)
    recompute_norm_stats(model, [torch.randn(5, 3)])
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))
