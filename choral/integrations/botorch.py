"""BoTorch interop: a fitted vector :class:`~choral.surrogate.Surrogate` as a BoTorch ``Model``.

:func:`as_botorch_model` wraps the ensemble as a ``botorch.models.ensemble.EnsembleModel``
whose posterior is an ensemble posterior over the member means (the latent function; the
members' aleatoric variance is observation noise). Its forward pass runs the stacked members on
torch inputs, so it is differentiable: BoTorch's acquisition functions (e.g.
``qLogExpectedImprovement``) and ``optimize_acqf`` work on it. The posterior's ``mean`` equals
the choral predictive's ``mean`` and its ``variance`` the predictive's ``epistemic`` variance
(the population variance of the members, not BoTorch's reliability-weighted ``s / (s - 1)``).

BoTorch is imported lazily (extra ``choral[botorch]``).

Examples:
    >>> import numpy as np, pytest, torch
    >>> _ = pytest.importorskip("botorch")
    >>> from choral.config import Config
    >>> from choral.surrogate import Surrogate
    >>> X = np.random.default_rng(0).uniform(0, 1, (32, 2)); Y = X.sum(1, keepdims=True)
    >>> cfg = Config().updated(**{"train.members": 3, "train.epochs": 3})
    >>> model = as_botorch_model(Surrogate(cfg).fit(X, Y))
    >>> post = model.posterior(torch.rand(4, 5, 2, dtype=torch.float64))
    >>> tuple(post.mean.shape), tuple(post.values.shape)
    ((4, 5, 1), (4, 3, 5, 1))
"""

from __future__ import annotations

import functools
from typing import Any

from torch import Tensor

from choral.errors import DataError

__all__ = ["as_botorch_model"]


def as_botorch_model(surrogate: Any) -> Any:
    """A BoTorch ``EnsembleModel`` over the members of a fitted vector ``surrogate``.

    ``model.forward(X)`` maps ``X`` (batch..., q, d) to member means (batch..., s, q, m);
    ``model.posterior(X)`` is an ensemble posterior with ``mean`` and ``variance``
    (batch..., q, m) equal to the choral predictive's ``mean`` and ``epistemic``.
    """
    if getattr(surrogate, "params", None) is None:
        raise DataError("surrogate must be a fitted choral Surrogate (call fit or load first)")
    if len(surrogate.x_shape) != 1 or len(surrogate.y_shape) != 1:
        raise DataError(f"surrogate must map vectors X (n, d) to Y (n, m); got x_shape "
                        f"{tuple(surrogate.x_shape)} and y_shape {tuple(surrogate.y_shape)}")
    return _classes()(surrogate)


@functools.cache
def _classes() -> type:
    from botorch.models.ensemble import EnsembleModel
    from botorch.posteriors.ensemble import EnsemblePosterior

    class ChoralPosterior(EnsemblePosterior):
        """Ensemble posterior whose variance is the weighted population variance of members."""

        @property
        def variance(self) -> Tensor:
            w = self.weights[..., None, None]
            return (w * (self.values - self.mean.unsqueeze(-3)) ** 2).sum(dim=-3)

    class ChoralModel(EnsembleModel):
        """A choral ensemble as a BoTorch model (see :func:`as_botorch_model`)."""

        def __init__(self, surrogate: Any) -> None:
            super().__init__()
            self.surrogate = surrogate
            self._num_outputs = int(surrogate.y_shape[0])

        def forward(self, X: Tensor) -> Tensor:
            sur = self.surrogate
            d = int(sur.x_shape[0])
            if X.shape[-1] != d:
                raise DataError(f"X must have {d} features in its last axis; got shape "
                                f"{tuple(X.shape)}")
            mean = sur.member_means(X.reshape(-1, d))  # (s, N, m), differentiable
            return mean.reshape(mean.shape[0], *X.shape[:-1], -1).movedim(0, -3)

        def posterior(self, X: Tensor, output_indices: list[int] | None = None,
                      posterior_transform: Any = None, **kwargs: Any) -> EnsemblePosterior:
            post = super().posterior(X, output_indices, None, **kwargs)
            post = ChoralPosterior(post.values)
            return post if posterior_transform is None else posterior_transform(post, X=X)

    return ChoralModel
