"""A training run interrupted anywhere and resumed from its checkpoint ends bit-identical to an
uninterrupted run, for every ensemble method (their accumulators included).

An interruption here is an exception raised from inside a training step (the checkpoint is then
whatever the last save left on disk); the command-line benchmark ``benchmarks/resume.py`` kills
real ``choral fit`` processes with SIGKILL.
"""

import numpy as np
import pytest
import torch

from choral.config import SoupConfig, TrainConfig, WeightSpaceConfig
from choral.ensembles import METHODS, TrainContext
from choral.ensembles import fit as fit_method
from choral.ensembles.checkpoint import Checkpoint
from choral.errors import ConfigError, ModelFileError
from choral.networks import MLP, PriorNet
from choral.networks.heads import GaussianHead
from choral.networks.members import choose_backend, init_members, member_forward

NLL = GaussianHead(1e-6).loss


class Killed(Exception):
    pass


def _killing(loss, at):
    """``loss`` that raises :class:`Killed` on its call number ``at`` (never when ``None``)."""
    calls = [0]

    def run(out, y):
        calls[0] += 1
        if calls[0] == at:
            raise Killed
        return loss(out, y)

    return run


def _context(method, loss, checkpoint=None):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(90, 3, generator=g, dtype=torch.float64)
    Y = torch.sin(X.sum(1, keepdim=True)) + 0.1 * torch.randn(90, 1, generator=g,
                                                               dtype=torch.float64)
    def make():  # the prior method's members carry a frozen random prior branch
        net = MLP(3, 2, [8])
        return PriorNet(net, MLP(3, 1, [8]), 1.0) if method == "prior" else net

    template, params = init_members(make, [1, 2, 3], torch.float64)
    cfg = TrainConfig(members=3, ensemble=method, epochs=12, batch_size=16, patience=3,
                      lr_schedule="cosine" if method == "deep" else "constant")
    return TrainContext(member_forward(template, choose_backend(template)), params, X[:70],
                        Y[:70], X[70:], Y[70:], cfg, [5, 6, 7], loss, template=template,
                        weightspace=WeightSpaceConfig(epochs=6, rank=3, samples=4, cycles=3),
                        soup=SoupConfig(), checkpoint=checkpoint)


def _tensors(result):
    records = {f"{name}.{k}": v for name, rec in result.records.items()
               for k, v in rec.items() if isinstance(v, torch.Tensor)}
    return {**result.params, **records}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resume_after_interruptions_is_bit_identical(method, tmp_path):
    reference = fit_method(method, _context(method, NLL))
    path = tmp_path / "fit.checkpoint"
    rng = np.random.default_rng(sorted(METHODS).index(method))
    kills = sorted(rng.choice(np.arange(2, 60), size=4, replace=False))
    resumed = []
    for at in [*kills, None]:
        ckpt = Checkpoint(path, "fingerprint", every_seconds=1e-9 if at and at % 2 else None,
                          every_epochs=1)
        resumed.append(ckpt.resumed)
        try:
            result = fit_method(method, _context(method, _killing(NLL, at), ckpt))
        except Killed:
            continue
        break
    assert resumed[0] is False and any(resumed[1:])  # it did resume, more than once
    want, got = _tensors(reference), _tensors(result)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert vars(result.history) == vars(reference.history)
    assert result.records.keys() == reference.records.keys()


def test_another_configuration_starts_over_and_require_refuses(tmp_path):
    path = tmp_path / "fit.checkpoint"
    first = Checkpoint(path, "a")
    first.finish(first.stage(), {"w": torch.ones(1)}, {"epochs_run": 1})
    other = Checkpoint(path, "b")
    assert other.stale and not other.resumed and other.result(other.stage()) is None
    with pytest.raises(ConfigError, match="another configuration"):
        Checkpoint(path, "b", resume="require")
    with pytest.raises(ConfigError, match="missing"):
        Checkpoint(tmp_path / "none", "a", resume="require")
    assert not Checkpoint(path, "a", resume="never").resumed


def test_a_damaged_checkpoint_is_named(tmp_path):
    path = tmp_path / "fit.checkpoint"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="unreadable.*delete it"):
        Checkpoint(path, "a")
