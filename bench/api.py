"""API benchmark: the event time-range query against /ping, in one run on one machine.

    python bench/api.py [--events 1000000] [--rate 1000] [--seconds 20] [--concurrency 32]

1. Fills ``--events`` events of one stream into Redis under a unique key prefix, the way the infer worker
   stores them (pre-serialised Event JSON per key, a sorted set of ids by start, the stream's longest
   event span), with pipelined MSET/ZADD batches; everything is deleted at the end.
2. Starts the real app (``create_app(kafka=False)``) with uvicorn in a subprocess: one worker, uvloop and
   httptools, no access log, and an ordinary (non-admin) API key, so every query also looks the key up.
3. Closed loop (``--concurrency`` connections, as fast as they go): requests/s of ``GET /ping`` and of
   ``GET /v1/streams/bench-cam/events?start=&end=&limit=10`` with random windows; the ratio of the two.
4. Open loop at ``--rate`` requests/s of the query: latency p50/p99/max measured from each request's
   scheduled send time (coordinated omission included: a slow answer delays the requests queued behind it).

The load generator must not be the bottleneck on a 2-core machine: the closed loop uses ``wrk`` (C, one
thread; Debian package ``wrk``) when it is on PATH, else a Python client in its own process (which may
limit /ping: the output says which ran). The open loop is a Python asyncio client in its own process: at
1000 requests/s it uses a few percent of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STREAM = "bench-cam"
ADMIN = "bench-admin-key"
BATCH = 20_000
MAX_SPAN = 12.0  # longest event, seconds
EVENT_JSON = (
    '{"schema_version":1,"event_id":"%(id)s","stream_id":"' + STREAM + '","label":"%(label)s",'
    '"state":"%(state)s","start":%(start)s,"end":%(end)s,"wall_start":%(ws)s,"wall_end":%(we)s,'
    '"confidence":%(conf)s,"description":"%(label)s near the entrance","boxes":[{"x1":112.0,"y1":40.32,'
    '"x2":201.6,"y2":239.4,"label":"%(label)s"}],"clip_ids":["%(clip)s"],"frame_timestamps":[%(start)s,'
    '%(end)s],"model_id":"zai-org/GLM-4.5V","prompt_hash":"9c1e4b7a2d","version":2,"updated_at":%(we)s}'
)
LABELS = ("person", "car", "person falls", "dog", "bicycle")


# --- fill -----------------------------------------------------------------------------------------------


def fill(url: str, prefix: str, n: int, seed: int = 1) -> tuple[float, float]:
    """``n`` events, one every ~1 s of media, 0.5..MAX_SPAN s long. Returns (media seconds, fill seconds)."""
    import redis

    from vstream.analysis.records import Event
    from vstream.names import Keys

    rng, keys, r = random.Random(seed), Keys(prefix), redis.Redis.from_url(url)
    started, t, wall0, longest = time.perf_counter(), 0.0, 1_700_000_000.0, 0.0
    for first in range(0, n, BATCH):
        bodies: dict[str, str] = {}
        scores: dict[str, float] = {}
        for i in range(first, min(n, first + BATCH)):
            t = round(t + rng.uniform(0.0, 2.0), 3)
            span = round(rng.uniform(0.5, MAX_SPAN), 3)
            longest = max(longest, span)
            eid = f"{i:016x}"
            label = LABELS[i % len(LABELS)]
            values = {"id": eid, "label": label, "state": "closed", "start": t, "end": round(t + span, 3)}
            values |= {"ws": wall0 + t, "we": wall0 + t + span, "conf": round(rng.random(), 3)}
            bodies[keys.event(STREAM, eid)] = EVENT_JSON % {**values, "clip": f"{STREAM}-0-{i // 3:07d}"}
            scores[eid] = t
        if first == 0:
            Event.model_validate_json(next(iter(bodies.values())))  # the template is a real Event
        pipe = r.pipeline(transaction=False)
        pipe.mset(bodies)
        pipe.zadd(keys.events(STREAM), scores)
        pipe.execute()
    from api.routes.results import spans_key

    r.zadd(spans_key(keys, STREAM), {"events": longest})  # what the writer keeps (ZADD GT)
    r.sadd(keys.streams, STREAM)
    return t, time.perf_counter() - started


def make_key(url: str, prefix: str) -> str:
    import redis.asyncio as aioredis

    from api.keys import KeyStore
    from vstream.names import Keys

    async def create() -> str:
        client = aioredis.Redis.from_url(url)
        try:
            return (await KeyStore(client, Keys(prefix)).create("bench", ["bench-*"]))[1]
        finally:
            await client.aclose()

    return asyncio.run(create())


def cleanup(url: str, prefix: str) -> int:
    import redis

    r, removed = redis.Redis.from_url(url), 0
    batch: list[bytes] = []
    for key in r.scan_iter(f"{prefix}*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            removed += r.unlink(*batch)
            batch.clear()
    if batch:
        removed += r.unlink(*batch)
    return removed


# --- server ---------------------------------------------------------------------------------------------


def serve(port: int) -> None:
    """Child mode: the real app, one uvicorn worker."""
    import uvicorn

    from api.app import create_app
    from vstream.config import load_settings

    app = create_app(load_settings(), kafka=False)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_server(url: str, prefix: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSTREAM_")}
    env |= {"VSTREAM_REDIS__URL": url, "VSTREAM_REDIS__KEY_PREFIX": prefix, "VSTREAM_API__ADMIN_KEY": ADMIN}
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the API did not start")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- load -----------------------------------------------------------------------------------------------


def query_path(rng: random.Random, media: float) -> str:
    width = rng.uniform(10.0, 300.0)
    start = rng.uniform(0.0, max(0.0, media - width))
    return f"/v1/streams/{STREAM}/events?start={start:.3f}&end={start + width:.3f}&limit=10"


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


def _raw(path: str, key: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n\r\n".encode()


async def open_loop(
    port: int, key: str, media: float | None, rate: float, seconds: float, conns: int
) -> dict[str, Any]:
    """Request k is due at t0 + k / rate; its latency counts from then, however late it is sent.
    ``media`` None: ``/ping`` at the same rate, the control (what the machine and the client add)."""
    rng, total = random.Random(7), int(rate * seconds)
    raws = [_raw("/ping" if media is None else query_path(rng, media), key) for _ in range(total)]
    samples: list[tuple[float, float]] = []  # (due, latency), seconds from the start
    lags: list[tuple[float, float]] = []  # (when, how late the client's own 1 ms timer fired)
    errors, nxt = 0, 0
    t0 = time.perf_counter() + 0.2

    async def worker() -> None:
        nonlocal errors, nxt
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while nxt < total:
            k, nxt = nxt, nxt + 1
            due = k / rate
            delay = t0 + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = await _request(reader, writer, raws[k])
            samples.append((due, time.perf_counter() - t0 - due))
            errors += status != 200
        writer.close()

    async def watch() -> None:  # the client's own stalls, which would show as latency
        while nxt < total:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((before - t0, time.perf_counter() - before - 0.001))

    await asyncio.gather(watch(), *(worker() for _ in range(conns)))
    took = time.perf_counter() - t0
    return {"achieved_rps": round(total / took, 1), "errors": errors, **_latency_summary(samples, lags)}


def _latency_summary(samples: list[tuple[float, float]], lags: list[tuple[float, float]]) -> dict[str, Any]:
    """Percentiles of all requests; and of those not due in a second where the load generator itself
    stalled for more than 20 ms (a frozen client or machine, which no server can answer for)."""
    stalled = {int(t) for t, lag in lags if lag > 0.020}
    latencies = sorted(lat for _, lat in samples)
    clean = sorted(lat for due, lat in samples if int(due) not in stalled)

    def pct(values: list[float], p: float) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 2) if values else float("nan")

    return {
        **{
            f"{name}_ms": pct(latencies, p)
            for name, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1))
        },
        "over_25ms": f"{sum(x > 0.025 for x in latencies) / len(latencies):.2%}",
        "client_lag_max_ms": round(max(lag for _, lag in lags) * 1000, 2),
        "stalled_seconds": len(stalled),
        "clean_p99_ms": pct(clean, 0.99),
    }


async def closed_loop(port: int, key: str, media: float | None, seconds: float, conns: int) -> dict[str, Any]:
    """The Python fallback of wrk: ``conns`` connections, each sending its next request on each answer."""
    rng = random.Random(3)
    done = errors = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            path = "/ping" if media is None else query_path(rng, media)
            errors += await _request(reader, writer, _raw(path, key)) != 200
            done += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return {"rps": round(done / (time.perf_counter() - started), 1), "errors": errors, "tool": "python"}


def client_child(args: argparse.Namespace) -> None:
    """Child mode: one load run in its own process (uvloop when available), a JSON line on stdout."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    spec = json.loads(args.client)
    if spec["mode"] == "open":
        out = asyncio.run(
            open_loop(spec["port"], spec["key"], spec["media"], spec["rate"], spec["seconds"], 64)
        )
    else:
        out = asyncio.run(
            closed_loop(spec["port"], spec["key"], spec["media"], spec["seconds"], spec["conns"])
        )
    print(json.dumps(out))


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--client", json.dumps(spec)], capture_output=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


WRK_SCRIPT = """
math.randomseed(%(seed)d)
local key = "%(key)s"
local media = %(media)f
request = function()
  local width = 10 + math.random() * 290
  local start = math.random() * math.max(0, media - width)
  local query = string.format("start=%%.3f&end=%%.3f&limit=10", start, start + width)
  local path = "/v1/streams/%(stream)s/events?" .. query
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. key})
end
response = function(status, headers, body)
  if status ~= 200 then wrk.thread:set("bad", (wrk.thread:get("bad") or 0) + 1) end
end
"""


def wrk(port: int, key: str, media: float | None, seconds: float, conns: int) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", f"http://127.0.0.1:{port}/ping"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % {"seed": 11, "key": key, "media": media or 0.0, "stream": STREAM})
    if media is not None:
        cmd[-1:] = ["-s", f.name, f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    non2xx = next((int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line), 0)
    return {"rps": rps, "errors": non2xx, "tool": "wrk"}


def closed(
    port: int, key: str, media: float | None, args: argparse.Namespace, seconds: float
) -> dict[str, Any]:
    if shutil.which("wrk") and not args.python_client:
        return wrk(port, key, media, seconds, args.concurrency)
    spec = {"mode": "closed", "port": port, "key": key, "media": media, "seconds": seconds}
    return run_client({**spec, "conns": args.concurrency})


def interleaved(port: int, key: str, media: float, args: argparse.Namespace) -> tuple[dict[str, Any], ...]:
    """/ping and the query in turns (other load on the machine hits both alike): medians of the rounds."""
    per = max(1, round(args.seconds / args.rounds))
    ping, query = [], []
    for _ in range(args.rounds):
        ping.append(closed(port, key, None, args, per))
        query.append(closed(port, key, media, args, per))
    ratios = sorted(q["rps"] / p["rps"] for p, q in zip(ping, query, strict=True))

    def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
        rps = sorted(r["rps"] for r in runs)
        return {**runs[0], "rps": rps[len(rps) // 2], "errors": sum(r["errors"] for r in runs), "all": rps}

    return median(ping), median(query), {"median": ratios[len(ratios) // 2], "all": ratios}


# --- main -----------------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> None:
    url = args.redis
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    server = None
    try:
        media, took = fill(url, prefix, args.events)
        print(f"fill: {args.events} events ({media:.0f} s of media) in {took:.1f} s", flush=True)
        key = ADMIN if args.admin else make_key(url, prefix)
        port = free_port()
        server = start_server(url, prefix, port)
        check = run_client(
            {"mode": "closed", "port": port, "key": key, "media": media, "seconds": 1, "conns": 4}
        )
        assert check["errors"] == 0, "the query fails: see the server's log"
        closed(port, key, None, args, 2)  # warm up
        closed(port, key, media, args, 2)
        ping, query, ratio = interleaved(port, key, media, args)
        spec = {"mode": "open", "port": port, "key": key, "media": media, "rate": args.rate}
        latency = run_client({**spec, "seconds": args.seconds})
        control = run_client({**spec, "media": None, "seconds": args.seconds})
        report(args, ping, query, ratio, latency, control)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            server.wait(10)
        print(f"cleanup: {cleanup(url, prefix)} keys deleted", flush=True)


def report(
    args: argparse.Namespace,
    ping: dict[str, Any],
    query: dict[str, Any],
    ratio: dict[str, Any],
    latency: dict[str, Any],
    control: dict[str, Any],
) -> None:
    each = f"{args.rounds} rounds of {max(1, round(args.seconds / args.rounds))} s, in turns"
    print(f"closed loop ({ping['tool']}, {args.concurrency} connections, {each}; median, then every round):")
    print(f"  GET /ping              {ping['rps']:>8.0f} req/s  errors {ping['errors']}  {ping['all']}")
    print(f"  GET events (limit 10)  {query['rps']:>8.0f} req/s  errors {query['errors']}  {query['all']}")
    verdict = "ok" if ratio["median"] >= 0.35 else "MISSED"
    rounds = [round(r, 3) for r in ratio["all"]]
    print(f"  query / ping           {ratio['median']:>8.4f}  (target >= 0.35: {verdict})  {rounds}")
    print(f"open loop at {args.rate:.0f} req/s (python asyncio, 64 connections, {args.seconds:.0f} s each):")
    for name, run in (("GET events (limit 10)", latency), ("GET /ping (control)", control)):
        ms = "  ".join(f"{k} {run[k + '_ms']} ms" for k in ("p50", "p90", "p99", "max"))
        head = f"{name:22} {run['achieved_rps']} req/s, errors {run['errors']}"
        print(f"  {head}: {ms}, > 25 ms: {run['over_25ms']}")
        stalls = f"{run['stalled_seconds']} s with a stall > 20 ms (longest {run['client_lag_max_ms']} ms)"
        print(f"  {'':22} load generator: {stalls}; p99 outside those seconds {run['clean_p99_ms']} ms")
    verdict = "ok" if latency["p99_ms"] <= 25 else "MISSED"
    print(f"  query p99 {latency['p99_ms']} ms (target <= 25 ms: {verdict})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=1000.0, help="open-loop requests/s of the query")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each measurement")
    p.add_argument("--concurrency", type=int, default=32, help="closed-loop connections")
    p.add_argument("--rounds", type=int, default=3, help="closed-loop turns of /ping and the query")
    p.add_argument("--redis", default=os.environ.get("VSTREAM_REDIS__URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--admin", action="store_true", help="query with the admin key (no key lookup)")
    p.add_argument("--python-client", action="store_true", help="closed loop with the Python client, not wrk")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--client", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.serve:
        serve(args.serve)
    elif args.client:
        client_child(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
