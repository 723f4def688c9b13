"""The ``choral`` command line, end to end.

Successful runs go through typer's CliRunner (in process, so torch is imported once). Every error
case runs the real entry point, ``choral.cli.main()`` (which turns user errors into exit code 2),
in a process of its own: see ``runs`` below.
"""

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from typer.testing import CliRunner

from choral import cli
from choral.cli.app import app
from choral.surrogate import Surrogate

FAST = ["--members", "2", "--epochs", "5", "--seed", "0"]
SCORES = {"rmse", "nll", "crps", "coverage_90", "calibration_error"}
runner = CliRunner()


def invoke(*args):
    """Run the app in process; fail with its output if it did not exit 0."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Borehole train/test files and a model fitted on them through the CLI."""
    d = tmp_path_factory.mktemp("cli")
    invoke("simulate", "borehole", "--n", "200", "--seed", "0", "--out", d / "train.npz")
    invoke("simulate", "borehole", "--n", "60", "--seed", "1", "--out", d / "test.npz")
    fitted = invoke("fit", "--data", d / "train.npz", "--out", d / "model", *FAST, "--json")
    return {"dir": d, "train": d / "train.npz", "test": d / "test.npz", "model": d / "model",
            "fit_stdout": fitted.stdout}


# ------------------------------------------------------------------------------- happy paths
def test_simulate_fit_evaluate_predict(work):
    with np.load(work["train"]) as z:
        assert z["X"].shape == (200, 8) and z["Y"].shape == (200, 1)
    summary = json.loads(work["fit_stdout"])
    assert summary["members"] == 2 and summary["epochs_run"] <= 5
    calibration = summary["calibration"]  # calibrated by default, on 20 held-out rows
    assert calibration["method"] == "pit_scale" and calibration["samples"] == 20
    assert set(calibration["before"]) == set(calibration["after"]) >= {"coverage_90", "nll"}
    assert sorted(p.name for p in work["model"].iterdir()) == [
        "calibration.json", "config.json", "metrics.json", "normaliser.json", "ood.json",
        "weights.safetensors"]
    assert not [p for p in work["dir"].iterdir() if p.name.startswith(".")]  # no temp leftovers

    result = invoke("evaluate", "--model", work["model"], "--data", work["test"], "--json")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1  # ONE JSON object, nothing else on stdout
    scores = json.loads(lines[0])
    assert isinstance(scores, dict) and SCORES <= set(scores)
    assert all(np.isfinite(scores[k]) for k in SCORES)
    assert 0 <= scores["coverage_90"] <= 1 and 0 <= scores["calibration_error"] <= 0.5

    preds = {}
    for level in (0.9, 0.5):
        out = work["dir"] / f"pred{level}.npz"
        invoke("predict", "--model", work["model"], "--data", work["test"], "--out", out,
               "--level", level)
        with np.load(out) as z:
            preds[level] = {k: z[k] for k in ("mean", "std", "lower", "upper")}
    for p in preds.values():
        for key, arr in p.items():
            assert arr.shape == (60, 1), key
            assert np.isfinite(arr).all(), key
        assert (p["lower"] <= p["mean"]).all() and (p["mean"] <= p["upper"]).all()
        assert (p["std"] > 0).all()
    wide, narrow = preds[0.9], preds[0.5]
    np.testing.assert_array_equal(wide["mean"], narrow["mean"])
    assert ((narrow["upper"] - narrow["lower"]) < (wide["upper"] - wide["lower"])).all()


def test_evaluate_prints_a_table_without_json(work):
    result = invoke("evaluate", "--model", work["model"], "--data", work["test"])
    assert "rmse" in result.stdout and "coverage_90" in result.stdout


def test_fit_same_seed_same_weights(work, tmp_path):
    invoke("fit", "--data", work["train"], "--out", tmp_path / "again", *FAST, "--quiet")
    a = load_file(work["model"] / "weights.safetensors")
    b = load_file(tmp_path / "again" / "weights.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_fit_with_toml_config_and_flag_override(work, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[model]\nhidden = [8]\nactivation = "tanh"\n'
                      '[train]\nmembers = 3\nepochs = 4\nseed = 7\n')
    invoke("fit", "--data", work["train"], "--out", tmp_path / "m", "--config", config,
           "--epochs", "2", "--quiet")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert saved["model"]["hidden"] == [8] and saved["model"]["activation"] == "tanh"
    assert saved["train"]["members"] == 3 and saved["train"]["seed"] == 7
    assert saved["train"]["epochs"] == 2  # the command-line flag beats the file
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["epochs_run"] <= 2


def test_fit_prints_its_calibration_and_calibration_none_trains_on_every_row(work, tmp_path):
    result = invoke("fit", "--data", work["train"], "--out", tmp_path / "m", *FAST, "--quiet")
    info = json.loads((tmp_path / "m" / "metrics.json").read_text())["calibration"]
    line = " ".join(result.stderr.split())  # as one line, however the console wrapped it
    assert f"90% coverage {info['before']['coverage_90']:.3f} before" in line
    assert f"{info['after']['coverage_90']:.3f} after" in line
    invoke("fit", "--data", work["train"], "--out", tmp_path / "n", *FAST, "--quiet",
           "--calibration", "none")
    metrics = json.loads((tmp_path / "n" / "metrics.json").read_text())
    assert metrics["calibration"] == {"method": "none", "reason": "turned off"}
    assert metrics["n_train"] + metrics["n_val"] == 200 and metrics["n_calibration"] == 0
    assert not (tmp_path / "n" / "calibration.json").exists()


def test_fit_evaluate_predict_on_csv(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (120, 3))
    flow = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2]
    train = tmp_path / "train.csv"
    np.savetxt(train, np.column_stack([X, flow]), delimiter=",", header="a,b,c,flow",
               comments="")
    inputs = tmp_path / "inputs.csv"  # no target column: predict does not need one
    np.savetxt(inputs, X[:10], delimiter=",", header="a,b,c", comments="")

    invoke("fit", "--data", train, "--y", "flow", "--out", tmp_path / "m", *FAST, "--quiet")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["x_shape"] == [3] and saved["y_shape"] == [1]  # a, b, c in; flow out
    # the model remembers the target's name, so evaluate needs no --y
    result = invoke("evaluate", "--model", tmp_path / "m", "--data", train, "--json")
    assert SCORES <= set(json.loads(result.stdout))
    invoke("predict", "--model", tmp_path / "m", "--data", inputs, "--out", tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as z:
        assert z["mean"].shape == (10, 1) and (z["lower"] <= z["upper"]).all()


def test_simulate_a_field_simulator(tmp_path):
    invoke("simulate", "darcy", "--n", "3", "--resolution", "9", "--fine", "17", "--seed", "0",
           "--out", tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["X"].shape == (3, 1, 9, 9) and f["Y"].shape == (3, 1, 9, 9)
        assert set(np.unique(f["X"][:])) == {3.0, 12.0}  # psi(GRF) takes the two FNO values


def test_fields_from_a_pt_dict_without_channel_axis_and_report(tmp_path):
    """Like the neuraloperator files: a .pt dict with x, y of shape (n, *grid), no channels."""
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.uniform(size=(24, 8, 8)) > 0.5)  # a bool mask, as there
    y = torch.as_tensor(np.cumsum(x.numpy(), axis=-1) / 8.0)
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    fitted = invoke("fit", "--data", tmp_path / "d.pt", "--x", "x", "--y", "y",
                    "--no-channel-axis", "--out", tmp_path / "m", *FAST, "--json")
    assert json.loads(fitted.stdout)["backbone"] == "unet"  # fields get the U-Net
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["x_shape"] == [1, 8, 8] and saved["y_shape"] == [1, 8, 8]
    scores = json.loads(invoke("evaluate", "--model", tmp_path / "m", "--data",
                               tmp_path / "d.pt", "--json").stdout)
    assert {"rel_l2", "nrmse"} <= set(scores)
    invoke("report", "--model", tmp_path / "m", "--data", tmp_path / "d.pt", "--out",
           tmp_path / "r", "--examples", "2")
    html = (tmp_path / "r" / "index.html").read_text()
    pngs = sorted(p.name for p in (tmp_path / "r").glob("*.png"))
    assert "example_1.png" in pngs and all(f'src="{p}"' in html for p in pngs)
    # without its calibration, the model's report has one reliability curve, no before/after
    (tmp_path / "m" / "calibration.json").unlink(missing_ok=True)
    invoke("report", "--model", tmp_path / "m", "--data", tmp_path / "d.pt", "--out",
           tmp_path / "r", "--examples", "0")
    html = (tmp_path / "r" / "index.html").read_text()
    assert "before calibration" not in html and "<th>calibration</th><td>none</td>" in html
    assert "<h2>Calibration</h2>" not in html and 'src="pit.png"' in html


@pytest.mark.parametrize("verb", [None, "simulate", "fit", "evaluate", "predict", "report",
                                  "calibrate", "demo"])
def test_help(verb):
    result = runner.invoke(app, [*([verb] if verb else []), "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_ctrl_c_during_fit_exits_130_and_saves_nothing(work, tmp_path, monkeypatch, capsys):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Surrogate, "fit", interrupted)
    monkeypatch.setattr(sys, "argv", ["choral", "fit", "--data", str(work["train"]), "--out",
                                      str(tmp_path / "m"), "--quiet"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 130
    assert "aborted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------- the real entry point
def _xy(n=20, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, d)), rng.uniform(size=(n, 1))


def _fit_on(d, **arrays):
    np.savez(d / "data.npz", **arrays)
    return ["fit", "--data", d / "data.npz", "--out", d / "model", *FAST]


def _nan(d, model):
    X, Y = _xy()
    X[3, 1] = np.nan
    X[17, 5] = np.inf
    return _fit_on(d, X=X, Y=Y), ["X", "NaN", "[3, 17]"]


def _mismatched_n(d, model):
    X, Y = _xy()
    return _fit_on(d, X=X, Y=Y[:15]), ["X has 20 rows", "Y has 15"]


def _wrong_ndim(d, model):
    X, Y = _xy()
    return _fit_on(d, X=X[:, 0], Y=Y), ["X must be", "2-D", "(20,)"]


def _empty(d, model):
    return _fit_on(d, X=np.zeros((0, 8)), Y=np.zeros((0, 1))), ["X is empty", "(0, 8)"]


def _no_such_array(d, model):
    X, Y = _xy()
    return [*_fit_on(d, X=X, Y=Y), "--y", "Z"], ["'Z'", "X, Y"]


def _zero_members(d, model):
    X, Y = _xy()
    args = _fit_on(d, X=X, Y=Y)
    return [*args[:args.index("--members")], "--members", "0"], ["train.members", "0"]


def _missing_file(d, model):
    return ["fit", "--data", d / "absent.npz", "--out", d / "model", *FAST], [
        "not found", "absent.npz"]


def _bracketed_name(d, model):  # a file name that looks like rich markup is printed verbatim
    return ["fit", "--data", d / "run[/v2].npz", "--out", d / "model"], ["run[/v2].npz"]


def _unknown_config_key(d, model):
    X, Y = _xy()
    (d / "c.toml").write_text("[train]\nmembers = 2\nbogus_key = 1\n")
    return [*_fit_on(d, X=X, Y=Y), "--config", d / "c.toml"], ["bogus_key"]


def _copy_model(d, model):
    shutil.copytree(model, d / "model")
    X, Y = _xy()
    np.savez(d / "data.npz", X=X, Y=Y)
    return ["evaluate", "--model", d / "model", "--data", d / "data.npz"]


def _missing_weights(d, model):
    args = _copy_model(d, model)
    (d / "model" / "weights.safetensors").unlink()
    return args, ["missing", "weights.safetensors"]


def _garbage_weights(d, model):
    args = _copy_model(d, model)
    (d / "model" / "weights.safetensors").write_bytes(b"these are not safetensors \x00\xff" * 4)
    return args, ["weights.safetensors", "corrupted"]


def _wrong_features(d, model):
    args = _copy_model(d, model)
    X, Y = _xy(d=5)
    np.savez(d / "data.npz", X=X, Y=Y)
    return args, ["features", "(8,)", "(20, 5)"]


def _unknown_calibration(d, model):
    args = _copy_model(d, model)
    return ["calibrate", *args[1:], "--method", "platt"], [
        "--method must be one of scale, pit_scale, isotonic, conformal, cqr", "'platt'"]


ERRORS = {f.__name__.lstrip("_"): f for f in (
    _nan, _mismatched_n, _wrong_ndim, _empty, _no_such_array, _zero_members, _missing_file,
    _bracketed_name, _unknown_config_key, _missing_weights, _garbage_weights, _wrong_features,
    _unknown_calibration)}

USAGE = {  # click-level usage errors: exit 2 with click's own message
    "missing_option": (["fit", "--out", "m"], "Missing option '--data'"),
    "not_an_int": (["fit", "--data", "x.npz", "--out", "m", "--members", "abc"], "--members"),
    "unknown_verb": (["fitt"], "No such command 'fitt'"),
}


def _listing(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# Run as `python -m choral.cli ...`, each in its own interpreter. The other cases run main() in
# children forked from one interpreter that has imported choral.cli.app (and torch) once: each child
# is a separate process with its own argv, cwd, stdout/stderr files and real exit status, but
# costs milliseconds instead of the ~2 s (more on 2 busy cores) of importing torch again.
EXEC = {"nan", "garbage_weights", "unknown_verb", "help", "evaluate_json"}

FORK_DRIVER = r"""
import json, os, sys, traceback
from choral.cli.app import main
codes = {}
for name, argv, cwd, log in json.load(sys.stdin):
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(cwd)
            for fd, suffix in ((1, ".out"), (2, ".err")):
                os.dup2(os.open(log + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.argv = ["choral", *argv]
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    codes[name] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(codes))
"""


def _listing(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.fixture(scope="module")
def runs(work, tmp_path_factory):
    """Every entry-point case, prepared, then run (in parallel where it can be).

    name -> (completed process, args, its directory, needles for stderr, listing before the run).
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    env.update(COLUMNS="80", NO_COLOR="1", OMP_NUM_THREADS="1")
    jobs = {}
    for name, make in ERRORS.items():
        d = tmp_path_factory.mktemp(name)
        args, needles = make(d, work["model"])
        jobs[name] = ([str(a) for a in args], d, needles)
    for name, (args, _) in USAGE.items():
        jobs[name] = (args, tmp_path_factory.mktemp(name), None)
    jobs["help"] = (["fit", "--help"], tmp_path_factory.mktemp("help"), None)
    jobs["evaluate_json"] = ([str(a) for a in ("evaluate", "--model", work["model"], "--data",
                                               work["test"], "--json")],
                             tmp_path_factory.mktemp("ok"), None)
    before = {name: _listing(d) for name, (_, d, _) in jobs.items()}
    forked = [] if not hasattr(os, "fork") or sys.platform != "linux" else [
        name for name in jobs if name not in EXEC]
    logs = tmp_path_factory.mktemp("logs")

    def run(args, d):
        return subprocess.run([sys.executable, "-m", "choral.cli", *args], cwd=d, env=env,
                              capture_output=True, text=True, timeout=300)

    def run_forked():
        spec = [(name, jobs[name][0], str(jobs[name][1]), str(logs / name)) for name in forked]
        driver = subprocess.run([sys.executable, "-c", FORK_DRIVER], input=json.dumps(spec),
                                env=env, capture_output=True, text=True, timeout=300)
        assert driver.returncode == 0, driver.stderr
        codes = json.loads(driver.stdout)
        return {name: subprocess.CompletedProcess(
            jobs[name][0], codes[name], (logs / f"{name}.out").read_text(),
            (logs / f"{name}.err").read_text()) for name in forked}

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        driver = pool.submit(run_forked) if forked else None
        futures = {name: pool.submit(run, args, d) for name, (args, d, _) in jobs.items()
                   if name not in forked}
        done = {name: f.result() for name, f in futures.items()} | (
            driver.result() if driver else {})
    return {name: (done[name], *jobs[name], before[name]) for name in jobs}


@pytest.mark.parametrize("name", list(ERRORS))
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(runs, name):
    proc, args, d, needles, before = runs[name]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr  # one line, unwrapped
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    # no model directory, no temporary directory, nothing changed in an existing model
    assert _listing(d) == before
    if args[0] == "fit":
        assert not (d / "model").exists()


@pytest.mark.parametrize("name", list(USAGE))
def test_usage_errors_exit_2_without_traceback(runs, name):
    proc, _, d, _, before = runs[name]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert USAGE[name][1] in proc.stderr
    assert _listing(d) == before


def test_entry_point_help_exits_0(runs):
    proc = runs["help"][0]
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and "--members" in proc.stdout


def test_entry_point_evaluate_json_prints_one_object(runs):
    proc = runs["evaluate_json"][0]
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and SCORES <= set(json.loads(lines[0]))


# ----------------------------------------------------------------------------- calibrate, OOD
@pytest.mark.parametrize("method", ["scale", "isotonic", "conformal"])
def test_calibrate_round_trip(work, tmp_path, method):
    model = tmp_path / "model"
    shutil.copytree(work["model"], model)
    result = invoke("calibrate", "--model", model, "--data", work["test"], "--method", method,
                    "--json")
    summary = json.loads(result.stdout)
    assert summary["method"] == method and summary["samples"] == 60
    saved = json.loads((model / "calibration.json").read_text())
    assert saved["method"] == method
    if method == "conformal":  # on its own calibration data: at least ceil(61 * 0.9) / 60
        assert summary["after"]["coverage_90"] >= 55 / 60
    # evaluate and predict now use the calibrated predictive
    scores = json.loads(invoke("evaluate", "--model", model, "--data", work["test"],
                               "--json").stdout)
    assert scores["coverage_90"] == pytest.approx(summary["after"]["coverage_90"])
    invoke("predict", "--model", model, "--data", work["test"], "--out", tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as z:
        with np.load(work["test"]) as t:
            inside = (t["Y"] >= z["lower"]) & (t["Y"] <= z["upper"])
        assert inside.mean() == pytest.approx(summary["after"]["coverage_90"])
    invoke("report", "--model", model, "--data", work["test"], "--out", tmp_path / "r")
    assert (tmp_path / "r" / "pit.png").is_file()
    # the report shows the reliability and calibration scores before and after calibration
    page = (tmp_path / "r" / "index.html").read_text()
    assert "<th>before calibration</th><th>after calibration</th>" in page
    assert "reliability diagram before and after calibration" in page
    assert f'<th>calibration</th><td>{method}</td>' in page
    for key in ("coverage_90", "coverage_50", "calibration_error"):
        before, after = summary["before"][key], summary["after"][key]
        assert (f'<tr><th>{key}</th><td class="num">{before:.4g}</td>'
                f'<td class="num">{after:.4g}</td></tr>') in page


def test_predict_writes_ood_scores_and_flags(work, tmp_path):
    lo = np.array([0.05, 100, 63070, 990, 63.1, 700, 1120, 9855])
    hi = np.array([0.15, 50000, 115600, 1110, 116, 820, 1680, 12045])
    with np.load(work["test"]) as t:
        X = t["X"]
    far = np.vstack([X, X + (hi - lo)])  # the second half is outside the box
    np.savez(tmp_path / "x.npz", X=far)
    invoke("predict", "--model", work["model"], "--data", tmp_path / "x.npz", "--out",
           tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as z:
        assert z["ood_score"].shape == (120,) and z["ood"].shape == (120,)
        assert z["ood"][:60].mean() < 0.2 and z["ood"][60:].mean() > 0.8
        assert z["ood_score"][60:].min() > np.median(z["ood_score"][:60])

