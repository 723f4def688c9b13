"""Ensembles: how members are trained and combined in weight space.

Deep ensembles (:mod:`.training`), weight-space ensembles that cost about one training run
(:mod:`.swa`, :mod:`.swag`, :mod:`.snapshot`, :mod:`.soup`), posterior members for small
data (:mod:`.prior`, :mod:`.laplace`, :mod:`.sgmcmc`), permutation alignment (:mod:`.align`,
:mod:`.permutations`), WiSE-FT interpolation (:mod:`.wiseft`) and merging of fine-tunes
through task vectors (:mod:`.merging`). Methods are
chosen by name through :mod:`.registry`; settings live in :mod:`.config`.
"""

# Importing the method modules registers them (choral.ensembles.registry.METHODS).
from choral.ensembles import (  # noqa: F401
    deep,
    laplace,
    prior,
    sgmcmc,
    snapshot,
    soup,
    swa,
    swag,
)
from choral.ensembles.context import Result, TrainContext
from choral.ensembles.registry import METHODS, fit, register

__all__ = ["METHODS", "Result", "TrainContext", "fit", "register"]
