"""Global sensitivity through a surrogate: Sobol indices per member, with error bars that
combine the members' disagreement and the Monte Carlo error (:mod:`.sobol`, :mod:`.result`)."""

from choral.checks import check_bounds
from choral.sensitivity.result import KINDS, SobolIndices
from choral.sensitivity.sobol import member_function, sobol_indices

__all__ = ["KINDS", "SobolIndices", "check_bounds", "member_function", "sobol_indices"]
