"""``python -m choral.cli``: the same as the ``choral`` command."""

from choral.cli.app import main

main()
