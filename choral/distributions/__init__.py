"""Predictive distributions: the :class:`Predictive` contract and its classes.

:class:`GaussianMixture` (Gaussian and mixture-density members) and
:class:`QuantilePredictive` (quantile members); the recalibrated predictives live with their
calibrators in :mod:`choral.evaluation.calibration`.
"""

from choral.distributions.base import Members, Predictive
from choral.distributions.mixture import GaussianMixture
from choral.distributions.quantile import QuantilePredictive, level_grid

__all__ = ["GaussianMixture", "Members", "Predictive", "QuantilePredictive", "level_grid"]
