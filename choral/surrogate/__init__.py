"""The surrogate (:class:`Surrogate`: fit, predict, calibrate, save, load) and its adaptation to
a new regime (:func:`finetune`, WiSE-FT)."""

from choral.surrogate.finetune import finetune
from choral.surrogate.model import Surrogate

__all__ = ["Surrogate", "finetune"]
