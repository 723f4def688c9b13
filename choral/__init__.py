"""choral: probabilistic neural surrogates from vectorised ensembles."""

from choral.errors import ChoralError, ConfigError, DataError, ModelFileError

__all__ = ["ChoralError", "ConfigError", "DataError", "ModelFileError"]
__version__ = "0.1.0"
