"""Training inputs that stabilise rollouts: noise injection and the pushforward trick.

A one-step model trained only on true states meets its own, slightly wrong, states as soon as
it is rolled out. Two remedies change the inputs of each training mini-batch
(an :data:`~choral.ensembles.training.InputHook` passed to
:meth:`~choral.surrogate.Surrogate.fit`), never the targets or the validation rows:

- **pushforward** (Brandstetter, Worrall & Welling 2022, "Message passing neural PDE
  solvers"): with probability ``pushforward`` a row's newest input state ``u[i]`` is replaced
  by the member's own prediction of it from the window before, ``u[i-h..i-1]``, computed
  without gradient; the loss is still taken against the true ``u[i+1]``. Each member sees its
  own prediction, so members stay independent. Rows whose window starts a trajectory have no
  window before and stay as they are.
- **input noise** (Sanchez-Gonzalez et al. 2020, "Learning to simulate complex physics with
  graph networks"): Gaussian noise of standard deviation ``noise`` (standardised input units)
  is added to every input value.

Row ``j`` of :func:`~choral.surrogate.rollout.history_pairs` has its window before at row
``previous_rows(...)[j]`` (-1 at a trajectory's start).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from choral.ensembles.training import InputHook
from choral.networks.members import Forward

if TYPE_CHECKING:  # pragma: no cover
    from choral.surrogate.model import Surrogate

__all__ = ["TrainingInputs", "batch_generator", "previous_rows"]


def previous_rows(n: int, t: int, history: int) -> np.ndarray:
    """For the ``n (t - h)`` rows of ``history_pairs`` of ``n`` trajectories of ``t`` states,
    the row holding each row's window one step earlier, -1 for a trajectory's first row.

    >>> previous_rows(2, 4, 2).tolist()
    [-1, 0, -1, 2]
    """
    k = t - history
    rows = np.arange(n * k) - 1
    rows[::k] = -1
    return rows


def batch_generator(seed: int, idx: Tensor) -> torch.Generator:
    """A CPU generator seeded by ``seed`` and a mini-batch's row indices ``idx`` (s, b).

    Why not one generator for the whole fit: its state would have to be checkpointed with the
    optimiser's; drawn from the batch itself, a fit resumed mid-way draws what the
    uninterrupted fit drew (the batches are seeded, so they repeat exactly).

    >>> idx = torch.tensor([[3, 1], [0, 2]])
    >>> a, b, c = (torch.rand(2, generator=batch_generator(seed, idx)) for seed in (0, 0, 1))
    >>> bool(torch.equal(a, b)), bool(torch.equal(a, c))
    (True, False)
    """
    digest = hashlib.sha256(np.int64(seed).tobytes() + idx.cpu().numpy().astype(np.int64).tobytes())
    return torch.Generator().manual_seed(int.from_bytes(digest.digest()[:8], "little") >> 1)


@dataclass(frozen=True)
class TrainingInputs:
    """:meth:`~choral.surrogate.Surrogate.fit`'s ``inputs`` for one-step pairs of trajectories.

    Args:
        previous: :func:`previous_rows` of the pairs (n,).
        history: the window h; each input holds h states of ``channels`` = c channels (then
            any conditioning channels, which stay as they are).
        pushforward: the probability that a training row's newest state is the member's own
            prediction (in [0, 1]).
        noise: the standard deviation of the Gaussian noise added to the inputs (>= 0).
        seed: with the batch's row indices, seeds the CPU generator of the rows chosen and of
            the noise, batch by batch (:func:`batch_generator`).
    """

    previous: np.ndarray
    history: int
    channels: int
    pushforward: float = 0.0
    noise: float = 0.0
    seed: int = 0

    def __call__(self, model: Surrogate, Xs: Tensor, train_rows: Tensor) -> InputHook:
        """The hook for ``model``'s training rows ``train_rows`` of its standardised ``Xs``."""
        previous = torch.as_tensor(self.previous)[train_rows.cpu()]
        h, c = self.history, self.channels
        loc, scale = (torch.as_tensor(a, dtype=Xs.dtype, device=Xs.device)
                      for a in model.x_norm.loc_scale(Xs.ndim))
        newest_channels = slice((h - 1) * c, h * c)  # the conditions (FiLM) come after them
        x_loc, x_scale = loc[newest_channels], scale[newest_channels]
        y_loc, y_scale = (torch.as_tensor(a, dtype=Xs.dtype, device=Xs.device)
                          for a in model.y_norm.loc_scale(Xs.ndim))
        head = model.head

        def hook(forward: Forward, params: dict[str, Tensor], x: Tensor, idx: Tensor) -> Tensor:
            generator = batch_generator(self.seed, idx)
            if self.pushforward > 0:
                before = previous[idx.cpu()]  # (s, b)
                pushed = (before >= 0) & (torch.rand(before.shape, generator=generator)
                                          < self.pushforward)
                if bool(pushed.any()):
                    with torch.no_grad():
                        weights = {k: v.detach() for k, v in params.items()}
                        out = forward(weights, Xs[before.clamp(min=0).to(Xs.device)])
                        state = head.member_means(out).to(x.dtype) * y_scale + y_loc
                        newest = (state - x_loc) / x_scale  # in the inputs' standardised units
                    mask = pushed.to(x.device).view(*pushed.shape, *[1] * (x.ndim - 2))
                    pushed_x = torch.cat([x[:, :, :(h - 1) * c], newest, x[:, :, h * c:]], 2)
                    x = torch.where(mask, pushed_x, x)
            if self.noise > 0:
                eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
                x = x + self.noise * eps.to(x.device)
            return x

        return hook
