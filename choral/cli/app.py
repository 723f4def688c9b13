"""The ``choral`` command line: one Typer app, every verb registered here.

Each verb is a plain function in the module of its group (:mod:`.data`, :mod:`.model`,
:mod:`.calibrate`, :mod:`.finetune`, :mod:`.merge`, :mod:`.demo`, :mod:`.sensitivity`,
:mod:`.infer`; the ``campaign`` group in :mod:`.campaign`) and shares options from
:mod:`.common`. Every user error (bad data, bad config, damaged model directory) prints one
message naming what is wrong and exits with code 2; nothing half-written is left behind.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from choral.cli.calibrate import calibrate
from choral.cli.campaign import campaign_app
from choral.cli.common import err
from choral.cli.data import simulate
from choral.cli.demo import demo
from choral.cli.export import export
from choral.cli.finetune import finetune
from choral.cli.infer import infer
from choral.cli.merge import merge
from choral.cli.model import evaluate, fit, predict, report
from choral.cli.sensitivity import sensitivity
from choral.cli.serve import serve
from choral.errors import ChoralError

try:  # typer >= 0.2x vendors click as typer._click (no `click` module); older typers use click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Probabilistic neural surrogates: vectorised ensembles with calibrated "
                       "mixture predictives.")
for verb in (simulate, fit, evaluate, predict, report, calibrate, finetune,
             export, serve, demo, sensitivity, infer):
    app.command()(verb)
app.command(context_settings={"allow_extra_args": True})(merge)  # --models A B C
app.add_typer(campaign_app, name="campaign")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)  # an int when typer turned Ctrl-C etc. into an exit
    except ChoralError as exc:  # escape: names like run[v2].npz are not rich markup; no wrapping
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except ClickException as exc:  # usage errors: unknown verb or option, bad option value
        exc.show()
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        if code == 130:
            err.print("aborted")
        sys.exit(code)


if __name__ == "__main__":
    main()
