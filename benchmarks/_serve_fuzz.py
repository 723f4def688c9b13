"""Malformed-request fuzzing of a running ``choral serve`` (used by ``serve.py``).

Bodies come from hypothesis: request objects whose every field may be missing, of the wrong
type, shape or width, NaN/inf, out of range or unknown; random JSON; random bytes; base64 that
is not, or of the wrong length. Each answer must be a 4xx with a ``detail`` message, or a 200
equal (float32 rounding) to ``Surrogate.predict`` of the inputs sent, decoded here by numpy.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

WIDTH = 8
finite = st.floats(-1e6, 1e6, allow_nan=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | any_float | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=20)
rows = st.integers(1, 4).flatmap(lambda n: st.lists(
    st.lists(st.one_of(finite, finite, any_float), min_size=WIDTH, max_size=WIDTH),
    min_size=n, max_size=n))
width_bad = st.lists(st.lists(finite, min_size=0, max_size=12), min_size=0, max_size=4)
inputs = st.one_of(rows, rows, width_bad, json_value,
                   st.lists(st.lists(st.lists(finite, max_size=3), max_size=3), max_size=3))


@st.composite
def b64(draw):
    n = draw(st.integers(0, 4))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    values = draw(st.lists(st.one_of(finite, any_float), min_size=n * WIDTH,
                           max_size=n * WIDTH))
    raw = np.asarray(values, dtype=dtype).tobytes()
    raw = raw[:draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw
    text = base64.b64encode(raw).decode()
    text = draw(st.sampled_from([text, text, text + "!", text[:-1], "%%%"]))
    shape = draw(st.sampled_from([[n, WIDTH], [n, WIDTH], [n], [n, WIDTH + 1], [0, WIDTH],
                                  [-n, WIDTH], None]))
    return {"data": text, "dtype": dtype, "shape": shape}


levels = st.one_of(st.lists(st.floats(0.01, 0.99), min_size=1, max_size=3),
                   st.lists(any_float, max_size=10), json_value)
request = st.one_of(
    st.builds(lambda x, lv: {"inputs": x, "levels": lv}, inputs, levels),
    st.builds(lambda x: {"inputs": x}, inputs),
    st.builds(lambda d, lv: d | {"levels": lv}, b64(), levels),
    b64(),
    st.builds(lambda x, k, v: {"inputs": x, k: v}, rows, st.text(max_size=6), json_value),
    st.dictionaries(st.sampled_from(["inputs", "data", "dtype", "shape", "levels"]),
                    json_value, max_size=5))
bodies = st.one_of(request.map(json.dumps), request.map(json.dumps),
                   json_value.map(json.dumps), st.binary(max_size=300),
                   st.builds(lambda k: "[" * k + "]" * k, st.integers(1, 100_000)))


def expected(body: bytes, model) -> tuple[np.ndarray, list[float]] | None:
    """The inputs (n, d) and levels of a body that should be answered 200, or None."""
    try:
        req = json.loads(body)
        if req.get("data") is not None:
            raw = base64.b64decode(req["data"], validate=True)
            X = np.frombuffer(raw, dtype=req.get("dtype", "float64")).reshape(req["shape"])
        else:
            X = np.asarray(req["inputs"], dtype=np.float64)
        return X.astype(np.float64), req.get("levels", [0.9])
    except Exception:  # noqa: BLE001 - anything unreadable here must not be a 200 either
        return None


def check(response, body: bytes, model) -> str | None:
    """Why the answer to ``body`` is wrong, or None."""
    if 400 <= response.status_code < 500:
        detail = response.json().get("detail")
        return None if detail else f"{response.status_code} without a detail message"
    if response.status_code != 200:
        return f"status {response.status_code}: {response.text[:200]}"
    parsed = expected(body, model)
    if parsed is None:
        return f"200 for a body that is not a valid request: {body[:200]!r}"
    X, lv = parsed
    pred, got = model.predict(X), response.json()
    ok = np.allclose(got["mean"], pred.mean.numpy(), rtol=1e-5) and np.allclose(
        got["std"], pred.stddev.numpy(), rtol=1e-5)
    for level in lv:
        lower, upper = pred.interval(level)
        band = got["intervals"][str(level)]
        ok = ok and np.allclose(band["lower"], lower.numpy(), rtol=1e-5, atol=1e-6)
        ok = ok and np.allclose(band["upper"], upper.numpy(), rtol=1e-5, atol=1e-6)
    return None if ok else f"200 with wrong values for {body[:200]!r}"


def fuzz(port: int, pid: int, model, n: int) -> dict:
    """Send ``n`` hypothesis bodies (plus one 17 MiB body and one 10,001-row request)."""
    import httpx
    import psutil

    url = f"http://127.0.0.1:{port}/predict"
    client = httpx.Client(timeout=60)
    good = json.dumps({"inputs": np.ones((1, WIDTH)).tolist()})
    for _ in range(2000):  # warm-up: allocator and caches settle before RSS "before"
        client.post(url, content=good)
    server = psutil.Process(pid)
    rss_before = server.memory_info().rss
    statuses: Counter[int] = Counter()
    bad: list[str] = []

    def send(body: bytes | str) -> None:
        body = body.encode() if isinstance(body, str) else body
        try:
            r = client.post(url, content=body, headers={"content-type": "application/json"})
        except httpx.HTTPError as e:
            bad.append(f"{type(e).__name__}: {e}")
            return
        statuses[r.status_code] += 1
        if (why := check(r, body, model)) is not None:
            bad.append(why)

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(bodies)
    def run(body) -> None:
        send(body)

    start = time.perf_counter()
    run()
    send(b" " * (17 * 2**20))
    send(json.dumps({"inputs": np.ones((10_001, WIDTH)).tolist()}))
    seconds = time.perf_counter() - start
    alive = server.is_running() and client.get(f"http://127.0.0.1:{port}/health").status_code == 200
    rss_after = server.memory_info().rss
    return {"requests": sum(statuses.values()) + sum(b.startswith(("Connect", "Read", "Remote"))
                                                     for b in bad),
            "statuses": dict(sorted(statuses.items())), "bad": len(bad), "first_bad": bad[:5],
            "alive": alive, "seconds": round(seconds, 1), "rss_before_mib": rss_before / 2**20,
            "rss_after_mib": rss_after / 2**20, "rss_change": rss_after / rss_before - 1}
