"""``choral serve``: the real uvicorn server in a subprocess on 127.0.0.1, spoken to over HTTP."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choral.config import Config
from choral.simulators import simulate
from choral.surrogate import Surrogate

ROOT = Path(__file__).parents[2]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(model, *extra):
    """``choral serve`` in a process of its own; returns (process, base URL) once it answers."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "choral.cli", "serve", "--model", str(model),
                             "--port", str(port), *map(str, extra)], env=env,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"the server did not start: {proc.stderr.read().decode()}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A borehole ensemble saved, loaded here and served (max 50 rows, 16 KiB bodies)."""
    X, Y = simulate("borehole", 200, seed=0)
    d = tmp_path_factory.mktemp("serve")
    cfg = Config().updated(**{"train.members": 3, "train.epochs": 10, "train.seed": 0})
    Surrogate(cfg).fit(X, Y).save(d / "model")
    proc, url = _start(d / "model", "--max-rows", 50, "--max-body-mb", 1 / 64,
                       "--batch-wait-ms", 20)
    yield Surrogate.load(d / "model"), url, proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def _expect(model, X, body, levels=(0.9,), rtol=1e-9):
    """A 200 body against Surrogate.predict / ood at X."""
    pred = model.predict(X)
    np.testing.assert_allclose(body["mean"], pred.mean.numpy(), rtol=rtol)
    np.testing.assert_allclose(body["std"], pred.stddev.numpy(), rtol=rtol)
    for level in levels:
        lower, upper = pred.interval(level)
        np.testing.assert_allclose(body["intervals"][str(level)]["lower"], lower.numpy(),
                                   rtol=rtol)
        np.testing.assert_allclose(body["intervals"][str(level)]["upper"], upper.numpy(),
                                   rtol=rtol)
    scores, flags = model.ood(X)
    np.testing.assert_allclose(body["ood_score"], scores, rtol=max(rtol, 1e-4))  # epistemic
    assert body["ood"] == flags.tolist() and body["rows"] == len(X)


def test_lists_and_base64_equal_predict(served):
    model, url, _ = served
    X, _ = simulate("borehole", 5, seed=3)
    X[0] *= 3.0  # far outside the training box: flagged OOD
    r = httpx.post(url + "/predict", json={"inputs": X.tolist(), "levels": [0.5, 0.9]})
    assert r.status_code == 200, r.text
    _expect(model, X, r.json(), levels=(0.5, 0.9))
    assert r.json()["ood"][0]
    for dtype in ("float64", "float32"):
        data = base64.b64encode(X.astype(dtype).tobytes()).decode()
        r = httpx.post(url + "/predict", json={"data": data, "dtype": dtype, "shape": [5, 8]})
        assert r.status_code == 200, r.text
        _expect(model, X.astype(dtype).astype(float), r.json())


def test_health_and_metadata(served):
    model, url, _ = served
    meta = httpx.get(url + "/metadata").json()
    assert meta["x_shape"] == [8] and meta["y_shape"] == [1] and meta["members"] == 3
    assert meta["calibration"] == model.calibrator.method and meta["max_rows"] == 50
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["waiting"] == 0


ROW = [0.1, 1000.0, 70000.0, 1000.0, 80.0, 800.0, 1400.0, 10000.0]
BAD = [  # (body, status, words the message must hold)
    ({"inputs": [ROW[:5]]}, 422, "must have shape (n, 8) with 1 <= n <= 50; got shape (1, 5)"),
    ('{"inputs": [' + json.dumps(ROW) + ", [NaN, " + json.dumps(ROW[1:])[1:-1] + "]]}", 422,
     "NaN/inf values in rows [1]"),
    ({"inputs": [ROW] * 51}, 422, "1 <= n <= 50; got shape (51, 8)"),
    ({"inputs": [ROW] * 400}, 413, "request body must be at most 16384 bytes"),
    ("{'inputs': nope", 400, "request body must be JSON"),
    ({"inputs": [ROW], "levels": [1.5]}, 422, "levels must lie in (0, 1)"),
    ({"inputs": [ROW], "colour": 1}, 422, "colour: Extra inputs are not permitted"),
    ({"inputs": [["a"] * 8]}, 422, "Input should be a valid number"),
    ({}, 422, "give exactly one of 'inputs'"),
    ({"data": "AAAA", "shape": [1, 8]}, 422, "must hold 8 float64 values (64 bytes)"),
    ({"data": "not base64!", "shape": [1, 8]}, 422, "data must be base64"),
    ({"inputs": [ROW, ROW[:7]]}, 422, "rectangular nested list"),
]


@pytest.mark.parametrize("body, status, words", BAD, ids=range(len(BAD)))
def test_bad_requests_are_4xx_with_a_message(served, body, status, words):
    _, url, _ = served
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(url + "/predict", content=content)
    assert r.status_code == status and words in r.json()["detail"], r.text


def test_concurrent_requests_get_their_own_rows(served):
    model, url, _ = served
    X, _ = simulate("borehole", 60, seed=4)
    sizes = [1, 2, 3] * 10
    starts = np.cumsum([0, *sizes[:-1]])
    before = httpx.get(url + "/health").json()

    def ask(k):
        rows = X[starts[k]:starts[k] + sizes[k]]
        return rows, httpx.post(url + "/predict", json={"inputs": rows.tolist()}, timeout=30)

    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(ask, range(len(sizes))))
    for rows, r in answers:
        assert r.status_code == 200, r.text
        _expect(model, rows, r.json(), rtol=1e-5)  # float32 networks, other batch sizes
    after = httpx.get(url + "/health").json()
    assert after["requests"] - before["requests"] == len(sizes)
    assert after["batches"] - before["batches"] < len(sizes)  # some were micro-batched


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=12)
requests = st.fixed_dictionaries({}, optional={
    "inputs": json_value | st.lists(st.lists(st.floats(-1e3, 1e3), min_size=7, max_size=9),
                                    max_size=3),
    "data": json_value | st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
    "shape": json_value | st.lists(st.integers(-1, 9), max_size=3),
    "dtype": json_value | st.sampled_from(["float32", "float64"]),
    "levels": json_value | st.lists(st.floats(0, 1), max_size=3)})


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(body=requests.map(json.dumps) | st.binary(max_size=100))
def test_fuzzed_requests_are_4xx_or_correct(served, body):
    model, url, _ = served
    r = httpx.post(url + "/predict", content=body)
    if r.status_code == 200:  # then it was a valid request: check the values
        req = json.loads(body)
        X = np.asarray(req["inputs"], dtype=float) if "inputs" in req else np.frombuffer(
            base64.b64decode(req["data"]), dtype=req.get("dtype", "float64")).reshape(
            req["shape"]).astype(float)
        _expect(model, X, r.json(), levels=req.get("levels", [0.9]), rtol=1e-5)
    else:
        assert 400 <= r.status_code < 500 and r.json()["detail"], r.text


def test_sigterm_finishes_requests_in_flight(served):
    """Runs last: stops the module's server. A request whose body is half sent when SIGTERM
    comes is still answered (correctly), then the server exits and refuses connections."""
    model, url, proc = served
    X, _ = simulate("borehole", 2, seed=5)
    body = json.dumps({"inputs": X.tolist()}).encode()
    half_sent, go_on = threading.Event(), threading.Event()

    def slow_body():
        yield body[:20]
        half_sent.set()
        go_on.wait(10)
        yield body[20:]

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(httpx.post, url + "/predict", content=slow_body(), timeout=30,
                             headers={"content-length": str(len(body))})
        assert half_sent.wait(10)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None and not future.done()  # waiting for the request in flight
        go_on.set()
        answer = future.result()
    assert answer.status_code == 200, answer.text
    _expect(model, X, answer.json(), rtol=1e-5)
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=2)
