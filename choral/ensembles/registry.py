"""The ensemble methods by name: ``train.ensemble`` (``choral fit --ensemble ...``).

A method is a function ``fit(ctx: TrainContext) -> Result`` (:mod:`choral.ensembles.context`)
that turns the stacked initial members, the data, the head's loss and the settings into the
stacked networks (S, ...) the surrogate evaluates as a mixture, the training history, and extra
model files (moments, curves) saved beside the weights. Saved models need no method code to
load: the surrogate evaluates whatever networks are stored.

Methods register themselves here when :mod:`choral.ensembles` is imported: ``deep``
(:mod:`.training`), ``swa`` (:mod:`.swa`), ``swag`` and ``multiswag`` (:mod:`.swag`),
``snapshot`` (:mod:`.snapshot`), ``soup`` (:mod:`.soup`), ``prior`` (:mod:`.prior`),
``laplace`` (:mod:`.laplace`), ``sgmcmc`` (:mod:`.sgmcmc`).

Examples:
    >>> import choral.ensembles
    >>> sorted(METHODS)
    ['deep', 'laplace', 'multiswag', 'prior', 'sgmcmc', 'snapshot', 'soup', 'swa', 'swag']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from choral.checks import check_choice

__all__ = ["METHODS", "Method", "fit", "register"]

Method = Callable[[Any], Any]
"""``fit(ctx: TrainContext) -> Result``."""

METHODS: dict[str, Method] = {}
"""Every registered method by name: the one source of ``train.ensemble``'s allowed values."""


def register(name: str) -> Callable[[Method], Method]:
    """Decorator: make a method available as ``train.ensemble = name``."""

    def add(fn: Method) -> Method:
        METHODS[name] = fn
        return fn

    return add


def fit(name: str, ctx: Any) -> Any:
    """Run the method ``name`` (``train.ensemble``) on a ``TrainContext``; its ``Result``."""
    return METHODS[check_choice(name, "train.ensemble", METHODS)](ctx)
