"""``choral serve`` under load: micro-batched vs one request at a time; malformed requests.

Protocol (issue 18): a borehole model (``--members`` members, 400 training runs) is fitted and
saved. Two ``choral serve`` processes on 127.0.0.1 run the same model, one after the other:
micro-batched (the defaults: up to 2 ms or 256 rows per prediction) and without micro-batching
(``--batch-wait-ms 0 --batch-rows 1``: each request predicted alone, one at a time). Against
each, a bounded asyncio load loop runs for ``--seconds``: ``--clients`` coroutines split over
``--procs`` load processes, each with a keep-alive connection (a minimal HTTP/1.1 client on
asyncio streams) sending 1-row requests back to back. Every answer is checked against
``Surrogate.predict`` of its own row (mean to 1e-5 relative: the float32 networks round
differently in batches of other sizes). Targets: no failed request, p99 latency < 50 ms,
throughput >= 5x that of the unbatched server.

Then ``--fuzz`` malformed requests (hypothesis; JSON of the wrong shape, types, widths, NaN,
bad base64, bad levels, too many rows, too large a body, random bytes) go to the batched server:
every answer must be a 4xx with a ``detail`` message or a 200 that equals ``Surrogate.predict``
of the inputs sent; the server must stay up with RSS after within 10% of before (RSS "before"
is taken after 2,000 warm-up requests). Prints one JSON object (also ``results/serve.json``):

    python benchmarks/serve.py [--seconds 60] [--clients 200] [--procs 2] [--fuzz 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "choral.cli", "serve", "--model", str(model),
                             "--port", str(port), *extra], env=env, stderr=subprocess.PIPE)
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stderr.read().decode()}")


def stop_server(proc: subprocess.Popen) -> int:
    proc.terminate()
    return proc.wait(timeout=60)


async def _post(reader, writer, path: str, body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive POST on an open connection: (status, body)."""
    writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                  if k.lower() == "content-length")
    return status, await reader.readexactly(length)


async def _load(port: int, X: np.ndarray, want: np.ndarray, clients: int, seconds: float,
                seed: int) -> dict:
    """``clients`` coroutines, each with its own keep-alive connection (a minimal HTTP/1.1
    client on asyncio streams: httpx's pool costs more CPU than the server on 2 cores)."""
    latencies: list[float] = []
    failures: list[str] = []
    stop = time.perf_counter() + seconds

    async def one(k: int) -> None:
        rng = np.random.default_rng([seed, k])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        try:
            while time.perf_counter() < stop:
                i = int(rng.integers(len(X)))
                body = json.dumps({"inputs": X[i:i + 1].tolist()}).encode()
                t = time.perf_counter()
                try:
                    status, content = await asyncio.wait_for(
                        _post(reader, writer, "/predict", body), 60)
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as e:
                    failures.append(f"{type(e).__name__}: {e}")
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - t)
                if status != 200:
                    failures.append(f"{status}: {content[:200]!r}")
                elif not np.allclose(json.loads(content)["mean"][0], want[i], rtol=1e-5, atol=0):
                    failures.append(f"row {i}: got {content[:200]!r}, want {want[i]}")
        finally:
            writer.close()

    await asyncio.gather(*(one(k) for k in range(clients)))
    return {"latencies": latencies, "failures": failures}


def _load_proc(args: tuple) -> dict:
    return asyncio.run(_load(*args))


def load(port: int, X: np.ndarray, want: np.ndarray, clients: int, seconds: float,
         procs: int) -> dict:
    """``clients`` closed-loop clients split over ``procs`` processes for ``seconds``."""
    per = [clients // procs + (k < clients % procs) for k in range(procs)]
    jobs = [(port, X, want, c, seconds, k) for k, c in enumerate(per)]
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(procs) as pool:
        parts = pool.map(_load_proc, jobs)
    wall = time.perf_counter() - start
    lat = np.concatenate([p["latencies"] for p in parts]) * 1e3
    failures = [f for p in parts for f in p["failures"]]
    return {"clients": clients, "load_processes": procs, "seconds": round(wall, 1),
            "requests": int(lat.size), "failed": len(failures),
            "first_failures": failures[:5], "throughput_rps": round(lat.size / seconds, 1),
            "latency_ms": {q: round(float(np.percentile(lat, p)), 2) for q, p in
                           (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--fuzz", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from benchmarks._serve_fuzz import fuzz
    from choral.config import Config
    from choral.simulators import simulate
    from choral.surrogate import Surrogate

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    X, Y = simulate("borehole", 400, seed=0)
    cfg = Config().updated(**{"train.members": args.members, "train.epochs": 200,
                              "train.seed": 0})
    Surrogate(cfg).fit(X, Y).save(work / "model")
    model = Surrogate.load(work / "model")
    X_test, _ = simulate("borehole", 1000, seed=1)
    want = model.predict(X_test).mean.numpy()
    result = {"benchmark": "serve", "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores (shared with other jobs), torch {torch.__version__}",
              "members": args.members, "protocol": vars(args) | {"out": str(args.out)}}
    for name, extra in (("batched", ()), ("unbatched", ("--batch-wait-ms", "0",
                                                        "--batch-rows", "1"))):
        port = free_port()
        proc = start_server(work / "model", port, *extra)
        try:
            result[name] = load(port, X_test, want, args.clients, args.seconds, args.procs)
            import httpx

            result[name]["server"] = httpx.get(f"http://127.0.0.1:{port}/health").json()
            if name == "batched" and args.fuzz:
                result["fuzz"] = fuzz(port, proc.pid, model, args.fuzz)
        finally:
            result[name]["exit_code"] = stop_server(proc)
        print(json.dumps({name: result[name]}), file=sys.stderr)
    b, u = result["batched"], result["unbatched"]
    ratio = b["throughput_rps"] / max(u["throughput_rps"], 1e-9)
    result["targets"] = {
        "no_failed_request": b["failed"] == 0,
        "p99_under_50ms": b["latency_ms"]["p99"] < 50,
        "throughput_ratio": round(ratio, 2), "throughput_5x": ratio >= 5,
        "littles_law_rps_for_p99_50ms": math.ceil(args.clients / 0.05)}
    if "fuzz" in result:
        f = result["fuzz"]
        result["targets"] |= {"fuzz_all_4xx_or_correct_200": f["bad"] == 0,
                              "fuzz_server_alive": f["alive"],
                              "fuzz_rss_within_10pct": abs(f["rss_change"]) <= 0.10}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
