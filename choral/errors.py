"""Exception types raised by choral.

Every error a user can cause (bad data, bad configuration, a damaged model directory) is a
:class:`ChoralError`, so the command line can turn it into a message and exit code 2 instead of a
traceback. Messages name the argument, what was expected and what came.
"""


class ChoralError(Exception):
    """Base class of every error choral raises on purpose."""


class DataError(ChoralError, ValueError):
    """Input arrays or data files are unusable (shape, dtype, NaN/inf, missing arrays)."""


class ConfigError(ChoralError, ValueError):
    """A configuration key is unknown or its value is invalid."""


class ModelFileError(ChoralError):
    """A saved model directory is missing a file or holds a corrupted one."""


class CampaignError(ChoralError):
    """A campaign ledger is inconsistent, or an illegal run-state transition was asked for."""


class GridWarning(UserWarning):
    """A field surrogate predicts on a grid other than the one its calibration was fitted on:
    the calibration's per-cell values are interpolated there and its coverage is unchecked."""
