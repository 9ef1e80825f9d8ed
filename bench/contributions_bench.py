"""Benchmark of the contributions path: gateway -> NATS -> contributions service -> Redis / GitHub.

Starts its own nats-server, two contributions replicas and one gateway as subprocesses, with a fake GitHub
GraphQL server (from the tests) in this process, all on 127.0.0.1. Measures:

1. a cached calendar through the gateway: latency p50/p99 of sequential requests, and throughput at a
   fixed concurrency;
2. 100 concurrent cold requests for one user spread over two replicas: calls that reached GitHub;
3. a cold five-year span against a cold one-year span, with a fixed fake GitHub latency per call.

Run from the repository root: `.venv/bin/python bench/contributions_bench.py [--requests N]`.
Needs Redis on 127.0.0.1:6379; it writes to db 2 under its own prefix and deletes those keys at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.contributions.fake_github import FakeGitHub  # noqa: E402

BIN = ROOT / ".venv" / "bin"
REDIS_URL = "redis://127.0.0.1:6379/2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def busy_counts(first: date, last: date) -> dict[date, int]:
    counts = {}
    day = first
    while day <= last:
        if day.toordinal() % 3:
            counts[day] = day.toordinal() % 11 + 1
        day += timedelta(days=1)
    return counts


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def wait_ready(url: str, deadline_seconds: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def wait_port(port: int, deadline_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


async def timed_get(client: httpx.AsyncClient, path: str, params: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    response = await client.get(path, params=params)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{path} returned {response.status_code}: {response.text[:200]}")
    return elapsed


async def measure(base_url: str, fake: FakeGitHub, requests: int, concurrency: int) -> dict[str, object]:
    results: dict[str, object] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
        # 1. Cached calendar (365 days), sequential and concurrent.
        await timed_get(client, "/api/v1/contributions/bench-user")
        for _ in range(50):
            await timed_get(client, "/api/v1/contributions/bench-user")
        latencies = [await timed_get(client, "/api/v1/contributions/bench-user") for _ in range(requests)]
        results["cached_p50_ms"] = statistics.median(latencies) * 1000
        results["cached_p99_ms"] = percentile(latencies, 0.99) * 1000

        svg_latencies = [
            await timed_get(client, "/api/v1/contributions/bench-user", {"format": "svg"})
            for _ in range(requests // 4)
        ]
        results["cached_svg_p50_ms"] = statistics.median(svg_latencies) * 1000
        results["cached_svg_p99_ms"] = percentile(svg_latencies, 0.99) * 1000

        semaphore = asyncio.Semaphore(concurrency)

        async def limited() -> float:
            async with semaphore:
                return await timed_get(client, "/api/v1/contributions/bench-user")

        started = time.perf_counter()
        await asyncio.gather(*(limited() for _ in range(requests)))
        results["cached_rps"] = requests / (time.perf_counter() - started)

        # Baseline: the gateway's liveness route, with no NATS or Redis behind it.
        async def limited_health() -> float:
            async with semaphore:
                return await timed_get(client, "/health")

        started = time.perf_counter()
        await asyncio.gather(*(limited_health() for _ in range(requests)))
        results["health_rps"] = requests / (time.perf_counter() - started)

        # 2. 100 concurrent cold requests for one user and span.
        before = len(fake.calls)
        cold = [timed_get(client, "/api/v1/contributions/cold-user", {"year": "2024"}) for _ in range(100)]
        cold_latencies = await asyncio.gather(*cold)
        results["cold_100_upstream_calls"] = len(fake.calls) - before
        results["cold_100_max_ms"] = max(cold_latencies) * 1000

        # 3. Cold five-year span against cold one-year span, five users each.
        one_year, five_years = [], []
        for index in range(5):
            one_year.append(
                await timed_get(client, f"/api/v1/contributions/span-one-{index}", {"year": "2024"})
            )
            five_years.append(
                await timed_get(
                    client,
                    f"/api/v1/contributions/span-five-{index}",
                    {"from": "2020-01-01", "to": "2024-12-31"},
                )
            )
        results["cold_1y_median_ms"] = statistics.median(one_year) * 1000
        results["cold_5y_median_ms"] = statistics.median(five_years) * 1000
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="cached requests per measurement")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="requests in flight for the throughput run"
    )
    parser.add_argument(
        "--github-latency", type=float, default=0.2, help="fake GitHub delay per call, seconds"
    )
    args = parser.parse_args()

    fake = FakeGitHub().start()
    fake.latency_seconds = args.github_latency
    today = date.today()
    history = busy_counts(date(2015, 1, 1), today)
    for login in (
        ["bench-user", "cold-user"]
        + [f"span-one-{i}" for i in range(5)]
        + [f"span-five-{i}" for i in range(5)]
    ):
        fake.add_user(login, history)

    store = tempfile.mkdtemp(prefix="nadzu-bench-nats-")
    nats_port, gateway_port = free_port(), free_port()
    prefix = f"nadzu-bench:contributions:{uuid.uuid4().hex}:"
    env = {
        **os.environ,
        "NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "REDIS_URL": REDIS_URL,
        "GITHUB_TOKEN": fake.token,
        "GITHUB_GRAPHQL_URL": fake.url,
        "CONTRIBUTIONS_KEY_PREFIX": prefix,
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(gateway_port),
        "RATE_LIMIT_ANONYMOUS": "1000000/minute",
    }
    processes = [
        subprocess.Popen(
            [str(BIN / "nats-server"), "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", store]
        )
    ]
    try:
        time.sleep(0.5)
        processes.append(subprocess.Popen([str(BIN / "nadzu-contributions")], env=env))
        processes.append(subprocess.Popen([str(BIN / "nadzu-contributions")], env=env))
        processes.append(subprocess.Popen([str(BIN / "nadzu-gateway")], env=env))
        base_url = f"http://127.0.0.1:{gateway_port}"
        wait_ready(f"{base_url}/health")
        wait_ready(f"{base_url}/api/v1/contributions/bench-user")

        results = asyncio.run(measure(base_url, fake, args.requests, args.concurrency))
    finally:
        # The services drain their NATS connections on the way out, so the server stops last.
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)
        fake.stop()
        shutil.rmtree(store, ignore_errors=True)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)

    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"command: {' '.join(sys.argv)}")
    print(f"fake GitHub latency per call: {args.github_latency * 1000:.0f} ms")
    for name, value in results.items():
        print(f"{name}: {value:.2f}" if isinstance(value, float) else f"{name}: {value}")


if __name__ == "__main__":
    main()
