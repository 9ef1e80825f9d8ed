"""Benchmark the gateway's edge: a bare Starlette route, `/health`, and authenticated requests.

    .venv/bin/python bench/edge_bench.py [--duration 10] [--connections 50] [--verify-requests 2000]

In one run, on this machine: a private NATS server, a scratch database, one auth replica, one gateway
worker (uvicorn, uvloop, httptools) and a bare Starlette app under the same uvicorn settings. wrk (Debian
package `wrk`) runs on the same cores with one thread. The `/api/v1/auth/me` requests send a cached API
key and pass the Redis rate limiter (its quota is set high, so every response is a 200 that paid the
Redis round trip). Then key verification on a cold cache: sequential `auth.rpc.verify-key` requests over
NATS, p50 and p99. Prints Markdown for docs/benchmarks.md. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.stack import Stack, free_port, wait_for_port  # noqa: E402

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def hello(request):
    return JSONResponse({"status": "ok"})

app = Starlette(routes=[Route("/", hello)])
"""

_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, duration: int, connections: int, headers: dict[str, str]) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    non_2xx = _NON_2XX.search(output)
    if non_2xx:
        raise RuntimeError(f"{url}: {non_2xx.group(1)} responses were not 2xx:\n{output}")
    latencies = {
        match.group(1): float(match.group(2)) * _UNITS_MS[match.group(3)]
        for match in _LATENCY.finditer(output)
    }
    rate = _RATE.search(output)
    assert rate is not None, output
    return {"rps": float(rate.group(1)), "p50": latencies["50"], "p99": latencies["99"]}


def start_bare_app(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    (workdir / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        cwd=workdir,
    )
    wait_for_port(port)
    return process, f"http://127.0.0.1:{port}/"


def verify_cold(stack: Stack, key: str, requests: int) -> dict[str, float]:
    """Time `auth.rpc.verify-key` one request at a time, as a gateway does on a cache miss."""
    import nats

    from nadzu_common.auth import AuthClient

    async def measure() -> list[float]:
        nc = await nats.connect(stack.nats.url)
        client = AuthClient(nc, 5)
        samples = []
        try:
            for _ in range(50):
                await client.verify_key(key)
            for _ in range(requests):
                started = time.perf_counter()
                reply = await client.verify_key(key)
                samples.append((time.perf_counter() - started) * 1000)
                assert reply.error is None, reply.error
        finally:
            await nc.close()
        return samples

    samples = sorted(asyncio.run(measure()))
    return {"p50": statistics.median(samples), "p99": samples[int(0.99 * (len(samples) - 1))]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--verify-requests", type=int, default=2000)
    arguments = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed; run `sudo apt-get install -y wrk`")

    stack = Stack.create(
        LOG_LEVEL="WARNING",
        RATE_LIMIT_KEY="100000000/minute",
        RATE_LIMIT_ANONYMOUS="100000000/minute",
    )
    bare: subprocess.Popen[bytes] | None = None
    try:
        gateway = stack.start_gateway()
        key = str(stack.create_key("bench-edge")["key"])
        bare, bare_url = start_bare_app(stack.downloads_dir)

        me_url = f"{gateway.base_url}/api/v1/auth/me"
        check = httpx.get(me_url, headers={"X-API-Key": key})
        assert check.status_code == 200, check.text
        assert "ratelimit" in check.headers

        runs = [
            ("bare Starlette JSON route", bare_url, {}),
            ("gateway `GET /health`", f"{gateway.base_url}/health", {}),
            ("gateway `GET /api/v1/auth/me` (cached key, Redis limiter)", me_url, {"X-API-Key": key}),
            (
                "gateway `GET /api/v1/downloads` (FastAPI route, cached key, Redis limiter)",
                f"{gateway.base_url}/api/v1/downloads",
                {"X-API-Key": key},
            ),
        ]
        results = []
        for label, url, headers in runs:
            run_wrk(url, 2, arguments.connections, headers)  # warm-up
            print(f"bench: {label}", file=sys.stderr)
            results.append((label, run_wrk(url, arguments.duration, arguments.connections, headers)))

        print("bench: key verification over NATS, cold cache", file=sys.stderr)
        verify = verify_cold(stack, key, arguments.verify_requests)
    finally:
        if bare is not None:
            bare.terminate()
            bare.wait(timeout=10)
        stack.close()

    ceiling = results[0][1]["rps"]
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"wrk -t1 -c{arguments.connections} -d{arguments.duration}s --latency, after a 2 s warm-up")
    print()
    print("| endpoint | requests/s | p50 | p99 | ÷ bare route |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, figures in results:
        print(
            f"| {label} | {figures['rps']:,.0f} | {figures['p50']:.2f} ms | {figures['p99']:.2f} ms "
            f"| {figures['rps'] / ceiling:.2f}× |"
        )
    print()
    print(
        f"Key verification over NATS, cold cache ({arguments.verify_requests} sequential requests): "
        f"p50 {verify['p50']:.2f} ms, p99 {verify['p99']:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
