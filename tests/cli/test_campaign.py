"""``choral campaign run | status | export`` end to end, with a shell-command simulator."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from choral.campaign.ledger import Ledger
from choral.cli.app import app, main

runner = CliRunner()

CAMPAIGN = """
seed = 2
bounds = [[0.0, 1.0], [-1.0, 1.0]]
design = "lhs"
initial = 4
batch_size = 2
budget = 8
candidates = 64

[simulator]
command = "{python} {script} {{input}} {{output}}"
timeout = 20.0

[surrogate]
model = {{ hidden = [16] }}
train = {{ members = 2, epochs = 20 }}
"""

SCRIPT = """import sys
import numpy as np
x = np.loadtxt(sys.argv[1])
if x[0] > 0.9:
    sys.exit("too hot")
np.savetxt(sys.argv[2], [x[0] ** 2 + x[1]])
"""


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def write_campaign(tmp_path):
    (tmp_path / "sim.py").write_text(SCRIPT)
    path = tmp_path / "campaign.toml"
    path.write_text(CAMPAIGN.format(python=sys.executable, script=tmp_path / "sim.py"))
    return path


def test_run_status_export_round_trip(tmp_path):
    toml = write_campaign(tmp_path)
    summary = json.loads(invoke("campaign", "run", toml, "--json").stdout)
    c = summary["counts"]
    assert c["done"] + c["failed"] == 8 and c["pending"] == 0
    status = json.loads(invoke("campaign", "status", toml, "--json").stdout)
    assert status["counts"] == c and [r["round"] for r in status["rounds"]] == [0, 1, 2]
    assert all("too hot" in f["error"] for f in status["failed"])
    assert "round" in invoke("campaign", "status", toml).stdout  # the table

    invoke("campaign", "export", toml, "--out", tmp_path / "runs.h5")
    led = Ledger(tmp_path / "campaign_campaign/ledger.db")
    done = led.runs("done")
    with h5py.File(tmp_path / "runs.h5") as f:
        np.testing.assert_array_equal(f["X"][:], np.stack([r.x for r in done]))
        np.testing.assert_array_equal(f["Y"][:], np.stack([r.y for r in done]))
        np.testing.assert_array_equal(f["run_id"][:], [r.id for r in done])
        assert len(f["failed/run_id"]) == c["failed"]
        assert json.loads(f.attrs["config"])["seed"] == 2
    X = np.stack([r.x for r in done])  # the command computed x0^2 + x1 at every input
    np.testing.assert_allclose(np.stack([r.y for r in done])[:, 0], X[:, 0] ** 2 + X[:, 1])

    again = json.loads(invoke("campaign", "run", toml, "--json").stdout)
    assert again["counts"] == c and again["recovered"] == {"running": 0, "corrupt": 0}


def test_user_errors_exit_2_with_a_message(tmp_path, monkeypatch, capsys):
    toml = tmp_path / "bad.toml"
    toml.write_text('budget = 0\n[simulator]\nbuiltin = "branin"\n')
    done = subprocess.run([sys.executable, "-c", "from choral.cli.app import main; main()",
                           "campaign", "run", str(toml)], capture_output=True, text=True,
                          timeout=60)  # one in a process of its own, as a user runs it
    assert done.returncode == 2 and "budget = 0" in done.stderr, done.stderr
    for args, message in (  # the rest through the same entry point, in this process
        (["status", str(tmp_path / "none.toml")], "no campaign ledger"),
        (["run", str(tmp_path / "none.toml")], "campaign file not found"),
        (["run", str(toml), "--backend", "dask"], "budget = 0"),
    ):
        monkeypatch.setattr(sys, "argv", ["choral", "campaign", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 2 and message in capsys.readouterr().err
