"""Campaign simulators: built-in, module:function, Python callables and shell commands, with
failures and timeouts recorded as outcomes (real processes, real files)."""

import sys
import time

import numpy as np
import pytest

from choral.campaign.config import SimulatorConfig
from choral.campaign.simulator import Simulation, import_function
from choral.errors import ConfigError
from choral.simulators import SIMULATORS


def _hang(X):
    time.sleep(60)


def test_builtin_matches_the_simulator(tmp_path):
    x = SIMULATORS["borehole"].sample(1, seed=3)[0]
    got = Simulation.from_config(SimulatorConfig(builtin="borehole")).evaluate(x, tmp_path)
    assert got.error is None
    np.testing.assert_allclose(got.y, SIMULATORS["borehole"](x[None])[0], rtol=1e-15)


def test_module_function(tmp_path, monkeypatch):
    (tmp_path / "mysim_w6a.py").write_text("def f(X):\n    return X.sum(axis=1, keepdims=True)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sim = Simulation.from_config(SimulatorConfig(function="mysim_w6a:f"))
    assert sim.evaluate(np.array([1.0, 2.5]), tmp_path).y.tolist() == [3.5]
    with pytest.raises(ConfigError, match="'mysim_w6a:g' cannot be imported"):
        import_function("mysim_w6a:g")
    with pytest.raises(ConfigError, match="expected 'module:function'"):
        import_function("mysim_w6a")


def test_python_failure_and_nan_are_errors(tmp_path):
    def bad(X):
        raise RuntimeError("solver diverged")

    assert Simulation(bad).evaluate(np.zeros(1), tmp_path).error == "RuntimeError: solver diverged"
    nan = Simulation(lambda X: X * np.nan).evaluate(np.zeros(1), tmp_path)
    assert nan.y is None and "NaN" in nan.error


def test_python_timeout_kills_the_run(tmp_path):
    start = time.perf_counter()
    got = Simulation(_hang, timeout=0.5).evaluate(np.zeros(1), tmp_path)
    assert got.error == "timed out after 0.5 s" and time.perf_counter() - start < 10
    ok = Simulation(lambda X: X + 1, timeout=5.0).evaluate(np.ones(2), tmp_path)  # forked
    assert ok.y.tolist() == [2.0, 2.0]


def test_shell_command_reads_and_writes_files(tmp_path):
    script = (f"{sys.executable} -c \"import numpy as np, sys; x = np.loadtxt(sys.argv[1]); "
              "np.savetxt(sys.argv[2], [x.sum(), x.prod()])\" {input} {output}")
    got = Simulation(command=script).evaluate(np.array([2.0, 3.0]), tmp_path / "run")
    assert got.error is None and got.y.tolist() == [5.0, 6.0]
    env = Simulation(command='echo 7 > "$CHORAL_OUTPUT"').evaluate(np.zeros(1), tmp_path / "r2")
    assert env.y.tolist() == [7.0]


@pytest.mark.parametrize(("command", "message"), [
    ("exit 3", "exit code 3"),
    ("true", "wrote no output file"),
    ("echo hello > {output}", "is not numbers"),
])
def test_shell_failures_are_recorded(tmp_path, command, message):
    got = Simulation(command=command).evaluate(np.zeros(2), tmp_path)
    assert got.y is None and message in got.error


def test_shell_timeout_kills_the_process_group(tmp_path):
    start = time.perf_counter()
    got = Simulation(command="sleep 30; echo 1 > {output}", timeout=0.5).evaluate(
        np.zeros(1), tmp_path)
    assert got.error.startswith("timed out after 0.5 s") and time.perf_counter() - start < 10


def test_stale_output_is_not_read(tmp_path):
    (tmp_path / "output.txt").write_text("1.0\n")  # left by an attempt that was killed
    got = Simulation(command="true").evaluate(np.zeros(1), tmp_path)
    assert "wrote no output file" in got.error


def test_config_needs_one_source():
    with pytest.raises(ConfigError, match="needs one of builtin, function or command"):
        Simulation.from_config(SimulatorConfig())
    with pytest.raises(ValueError, match="give one of builtin, function, command"):
        SimulatorConfig(builtin="branin", command="true")
