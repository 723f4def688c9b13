"""choral: probabilistic neural surrogates from vectorised ensembles.

The public API: :class:`Surrogate` (fit, predict, calibrate, save, load), :class:`Config`, the
predictive distributions (:class:`Predictive` and its classes) and the errors. The folders show
the flow from data to decisions: ``networks`` -> ``ensembles`` -> ``distributions`` ->
``evaluation`` -> ``surrogate`` -> ``acquisition`` -> ``campaign``; ``simulators`` beside;
``integrations`` and ``cli`` on top.
"""

from choral.errors import CampaignError, ChoralError, ConfigError, DataError, ModelFileError  # isort: skip
from choral.config import Config
from choral.distributions import GaussianMixture, Members, Predictive, QuantilePredictive
from choral.evaluation.calibration import ConformalPredictive, Recalibrated
from choral.surrogate import Surrogate

__all__ = [
    "CampaignError",
    "ChoralError",
    "Config",
    "ConfigError",
    "ConformalPredictive",
    "DataError",
    "GaussianMixture",
    "Members",
    "ModelFileError",
    "Predictive",
    "QuantilePredictive",
    "Recalibrated",
    "Surrogate",
]
__version__ = "0.1.0"
