"""Measure FastStream's cost per core NATS request, with and without dependency injection.

Serves one echo subject three ways on a private nats-server and sends requests one at a time from the
same process. The three subscribers are FastStream with its default dependency injection, FastStream
with `apply_types=False` and a decoder that passes the raw message through (how the auth service
subscribes), and a plain nats-py subscription. Run:

    .venv/bin/python bench/auth_faststream_overhead.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nats
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage as InjectedMessage
from faststream.nats.message import NatsMessage

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def pass_message(message: NatsMessage) -> NatsMessage:
    return message


async def p50_ms(nc: nats.NATS, subject: str, requests: int) -> float:
    for _ in range(200):
        await nc.request(subject, b'{"v":1}', timeout=5)

    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        await nc.request(subject, b'{"v":1}', timeout=5)
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per variant")
    args = parser.parse_args()

    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as store:
        server = await asyncio.create_subprocess_exec(
            str(BIN / "nats-server"),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-sd",
            store,
            stderr=asyncio.subprocess.PIPE,
        )
        assert server.stderr is not None
        while b"Server is ready" not in await server.stderr.readline():
            pass

        injected = NatsBroker(url, log_level=logging.DEBUG)

        @injected.subscriber("bench.injected", queue="bench")
        async def echo_injected(message: InjectedMessage) -> bytes:
            return message.body

        raw_broker = NatsBroker(url, log_level=logging.DEBUG, apply_types=False)

        @raw_broker.subscriber("bench.passthrough", queue="bench", decoder=pass_message)
        async def echo_passthrough(message: NatsMessage) -> bytes:
            return message.body

        plain = await nats.connect(url)

        async def echo_plain(message) -> None:  # type: ignore[no-untyped-def]
            await message.respond(message.data)

        await plain.subscribe("bench.plain", queue="bench", cb=echo_plain)
        await injected.start()
        await raw_broker.start()
        await plain.flush()
        client = await nats.connect(url)
        await client.flush()

        results = {}
        for name in ("injected", "passthrough", "plain"):
            results[f"{name}_p50_ms"] = round(await p50_ms(client, f"bench.{name}", args.requests), 3)

        await client.drain()
        await plain.drain()
        await injected.stop()
        await raw_broker.stop()
        server.terminate()
        await server.wait()

    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
