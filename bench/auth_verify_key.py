"""Measure API key verification over NATS (a gateway cache miss) and local token checks.

Starts its own nats-server (from the virtual environment) on a free port, a scratch PostgreSQL database
and the `nadzu-auth` entry point as a separate process. Then it sends `auth.rpc.verify-key` requests
from this process, first one at a time (latency) and then several in flight (throughput). Run:

    .venv/bin/python bench/auth_verify_key.py [--requests 5000] [--concurrency 32]

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path

import asyncpg
import nats

from nadzu_common.auth import AuthClient, TokenSigner, hash_api_key

BIN = Path(sys.executable).parent
POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_KEY = "bench-admin-key-" + secrets.token_hex(16)
SESSION_SECRET = secrets.token_hex(32)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def start_nats(store: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(BIN / "nats-server"),
        "-js",
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-sd",
        store,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    while b"Server is ready" not in await process.stderr.readline():
        pass
    return process, f"nats://127.0.0.1:{port}"


async def start_auth(nats_url: str, database_url: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "SESSION_SECRET": SESSION_SECRET,
        "ADMIN_API_KEY": ADMIN_KEY,
        "LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        str(BIN / "nadzu-auth"), env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    while True:
        line = await process.stderr.readline()
        if not line:
            raise RuntimeError("nadzu-auth exited during start-up")
        if json.loads(line).get("event") == "auth.started":
            # Keep reading its log, so the service never blocks on a full stderr pipe.
            asyncio.get_running_loop().create_task(drain(process.stderr))
            return process


async def drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def measure(nats_url: str, requests: int, concurrency: int) -> dict[str, float]:
    nc = await nats.connect(nats_url)
    client = AuthClient(nc, timeout_seconds=5.0)
    await nc.flush()

    for _ in range(200):  # warm-up: connections, prepared statements
        reply = await client.verify_key(ADMIN_KEY)
        assert reply.error is None, reply.error

    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        reply = await client.verify_key(ADMIN_KEY)
        latencies.append(time.perf_counter() - started)
        assert reply.error is None

    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            reply = await client.verify_key(ADMIN_KEY)
            assert reply.error is None

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await nc.drain()

    return {
        "sequential_p50_ms": statistics.median(latencies) * 1000,
        "sequential_p99_ms": percentile(latencies, 0.99) * 1000,
        "sequential_per_second": 1 / statistics.mean(latencies),
        "concurrent_per_second": requests / elapsed,
    }


def measure_local() -> dict[str, float]:
    """Per-call cost of what the gateway does without a round trip."""
    signer = TokenSigner(SESSION_SECRET)
    token = signer.issue_session(3600).token
    job_id = uuid.uuid4()
    query = signer.job_link_query(job_id, 900)
    expires, signature = (part.split("=", 1)[1] for part in query.split("&"))
    key = "nadzu_" + "A" * 40
    runs = 100_000
    return {
        "verify_session_us": timeit.timeit(lambda: signer.verify_session(token), number=runs) / runs * 1e6,
        "verify_job_link_us": timeit.timeit(
            lambda: signer.verify_job_link(job_id, expires, signature), number=runs
        )
        / runs
        * 1e6,
        "hash_api_key_us": timeit.timeit(lambda: hash_api_key(key), number=runs) / runs * 1e6,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight in the second phase")
    args = parser.parse_args()

    database = f"nadzu_bench_auth_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    with tempfile.TemporaryDirectory() as store:
        nats_process, nats_url = await start_nats(store)
        auth_process = await start_auth(nats_url, f"postgresql://postgres@127.0.0.1:5432/{database}")
        try:
            results = await measure(nats_url, args.requests, args.concurrency)
        finally:
            auth_process.terminate()
            await auth_process.wait()
            nats_process.terminate()
            await nats_process.wait()
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()

    results.update(measure_local())
    print(json.dumps({"requests": args.requests, "concurrency": args.concurrency, **results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
