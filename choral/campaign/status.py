"""What a campaign has done so far: run counts, rounds and their scores, read from the ledger.

>>> import tempfile, numpy as np
>>> from choral.campaign.ledger import Ledger
>>> d = Path(tempfile.mkdtemp()); led = Ledger(d / "ledger.db")
>>> _ = led.add_round(0, np.zeros((3, 2)))
>>> led.close()
>>> s = campaign_status(d)
>>> s["counts"], s["rounds"][0]["runs"]
({'pending': 3, 'running': 0, 'done': 0, 'failed': 0}, 3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from choral.campaign.ledger import Ledger
from choral.errors import CampaignError


def open_ledger(workdir: str | Path) -> Ledger:
    """The ledger of an existing campaign in ``workdir``; none there is a CampaignError."""
    path = Path(workdir) / "ledger.db"
    if not path.is_file():
        raise CampaignError(f"no campaign ledger at {path}: run `choral campaign run` first")
    return Ledger(path)


def campaign_status(workdir: str | Path) -> dict[str, Any]:
    """{counts, rounds: [{round, runs, done, failed, model, scores}], failed: [{id, error}]}."""
    with open_ledger(workdir) as ledger:
        runs = ledger.runs()
        rounds = []
        for info in ledger.rounds():
            mine = [r for r in runs if r.round == info["round"]]
            rounds.append({**info, "runs": len(mine),
                           "done": sum(r.state == "done" for r in mine),
                           "failed": sum(r.state == "failed" for r in mine)})
        failed = [{"id": r.id, "error": r.error} for r in runs if r.state == "failed"]
        return {"counts": ledger.counts(), "rounds": rounds, "failed": failed}


def status_table(status: dict[str, Any]) -> Table:
    """A rich table: one row per round with its runs and the scores of its model."""
    c = status["counts"]
    table = Table(title=f"{c['done']} done, {c['pending']} pending, {c['running']} running, "
                        f"{c['failed']} failed")
    for col in ("round", "runs", "done", "failed", "n_train", "max std", "best", "val nll",
                "passes"):
        table.add_column(col, justify="right")
    for r in status["rounds"]:
        s = r["scores"]
        table.add_row(str(r["round"]), str(r["runs"]), str(r["done"]), str(r["failed"]),
                      *(_fmt(s.get(k)) for k in ("n_train", "max_std", "best", "val_nll",
                                                      "member_pass_fraction")))
    return table


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
