"""The ``choral`` command line (:mod:`choral.cli.app`)."""

from choral.cli.app import app, main

__all__ = ["app", "main"]
