"""Run the images' HEALTHCHECK command against a real NATS server and a stub gateway.

    python healthcheck_smoke.py NATS_SERVER_BINARY

Run it with the Python of a virtual environment built the way the image builds it. The script starts
nats-server on a free loopback port, replies `ok` on downloads.rpc.health and `unavailable` on
auth.rpc.health, leaves contributions.rpc.health without a responder, and serves GET /health for the
gateway mode. Each `python -m nadzu_common.healthcheck SERVICE` must then exit 0 for a healthy service
and 1 otherwise.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import nats
from nats.aio.msg import Msg

from nadzu_common.bus import encode
from nadzu_common.messages import HealthReply


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HealthOnly(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/health" else 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def run_healthcheck(service: str, environment: dict[str, str]) -> int:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "nadzu_common.healthcheck", service],
        env=environment,
        capture_output=True,
        text=True,
        timeout=20,
    )
    elapsed = time.monotonic() - started
    print(f"  healthcheck {service}: exit {result.returncode} in {elapsed:.1f} s {result.stderr.strip()}")
    return result.returncode


async def serve_and_check(nats_url: str, gateway_port: int) -> list[str]:
    client = await nats.connect(nats_url)

    async def healthy(message: Msg) -> None:
        await message.respond(encode(HealthReply(status="ok", service="downloader")))

    async def unhealthy(message: Msg) -> None:
        reply = HealthReply(status="unavailable", service="auth", detail="database unavailable")
        await message.respond(encode(reply))

    await client.subscribe("downloads.rpc.health", queue="downloader", cb=healthy)
    await client.subscribe("auth.rpc.health", queue="auth", cb=unhealthy)
    await client.flush()

    environment = {**os.environ, "NATS_URL": nats_url, "GATEWAY_PORT": str(gateway_port)}
    expected = {"downloader": 0, "auth": 1, "contributions": 1, "gateway": 0}
    problems = []
    for service, expected_code in expected.items():
        code = await asyncio.to_thread(run_healthcheck, service, environment)
        if code != expected_code:
            problems.append(f"healthcheck {service}: exit {code}, expected {expected_code}")

    # With the gateway gone, the gateway mode must fail too.
    environment["GATEWAY_PORT"] = str(free_port())
    code = await asyncio.to_thread(run_healthcheck, "gateway", environment)
    if code != 1:
        problems.append(f"healthcheck gateway with nothing listening: exit {code}, expected 1")

    await client.close()
    return problems


def main() -> int:
    nats_server = sys.argv[1]
    port = free_port()
    gateway = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HealthOnly)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()

    with tempfile.TemporaryDirectory(prefix="healthcheck-smoke-") as store:
        server = subprocess.Popen(
            [nats_server, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        print(f"nats-server did not listen on port {port}", file=sys.stderr)
                        return 1
                    time.sleep(0.05)
            problems = asyncio.run(serve_and_check(f"nats://127.0.0.1:{port}", gateway.server_address[1]))
        finally:
            server.terminate()
            server.wait(timeout=10)
            gateway.shutdown()

    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
