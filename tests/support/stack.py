"""Real processes for end-to-end tests: nats-server, the gateway, auth and downloader replicas.

Every test session (every pytest-xdist worker) gets its own NATS server and database, so tests in
parallel never share a stream. Tests that stop or kill services build a stack of their own.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NATS_SERVER = BIN / "nats-server"
POSTGRES_URL = os.environ.get("NADZU_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("NADZU_TEST_REDIS", "redis://127.0.0.1:6379/1")
# Limits far above what any download test sends; the edge tests set their own.
GENEROUS_LIMITS = {
    "RATE_LIMIT_ANONYMOUS": "100000/minute",
    "RATE_LIMIT_SESSION": "100000/minute",
    "RATE_LIMIT_KEY": "100000/minute",
    "RATE_LIMIT_ENQUEUE_SESSION": "100000/hour",
    "RATE_LIMIT_ENQUEUE_KEY": "100000/hour",
    "RATE_LIMIT_AUTH_FAILURES": "100000/minute",
    "RATE_LIMIT_SESSIONS_ISSUED": "100000/minute",
    "MAX_ACTIVE_JOBS_PER_CALLER": "1000",
    "MAX_STREAMS_PER_CALLER": "1000",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class NatsServer:
    """A private nats-server on a free port, by default with JetStream and a temporary store."""

    def __init__(self, jetstream: bool = True) -> None:
        self.port = free_port()
        self.jetstream = jetstream
        self.store = Path(tempfile.mkdtemp(prefix="nadzu-nats-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        command = [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:
            command += ["-js", "-sd", str(self.store)]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.store, ignore_errors=True)


def create_database() -> str:
    """Create an empty database for one stack and return its URL."""
    name = f"nadzu_test_{uuid.uuid4().hex[:12]}"
    subprocess.run(
        ["psql", f"{POSTGRES_URL}/postgres", "-q", "-c", f'CREATE DATABASE "{name}"'],
        check=True,
        capture_output=True,
    )
    return f"{POSTGRES_URL}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    subprocess.run(
        ["psql", f"{POSTGRES_URL}/postgres", "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        check=False,
        capture_output=True,
    )


@dataclass
class Service:
    """One service process, its output kept in a log file for failure reports."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    # The METRICS_PORT it was given, for the services that serve metrics on a port of their own.
    metrics_port: int | None = None

    @property
    def metrics_url(self) -> str:
        assert self.metrics_port, f"{self.name} was started without a metrics port"
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]


@dataclass
class Stack:
    """A NATS server, a database and a downloads directory, with gateways and downloaders on demand."""

    nats: NatsServer
    database_url: str
    downloads_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    auth: Service | None = None
    # A `downloads` key that every gateway of this stack hands to its test clients.
    user_key: str | None = None

    @classmethod
    def create(cls, **env: str) -> Stack:
        nats = NatsServer().start()
        downloads = Path(tempfile.mkdtemp(prefix="nadzu-downloads-"))
        base_env = {
            "NATS_URL": nats.url,
            "DATABASE_URL": create_database(),
            "REDIS_URL": REDIS_URL,
            "DOWNLOADS_DIR": str(downloads),
            "DOWNLOADER_ALLOW_PRIVATE_URLS": "true",
            "METRICS_HOST": "127.0.0.1",
            "DOWNLOADER_CONCURRENCY": "2",
            "DOWNLOADER_ACK_WAIT_SECONDS": "4",
            "DOWNLOADER_RETRY_BASE_DELAY": "0.5",
            "DOWNLOADER_SHUTDOWN_TIMEOUT": "5",
            "DOWNLOADER_ARIA2C": "false",
            # Most tests download the same clip many times and want a real transfer each time.
            "DOWNLOADER_DEDUPE": "false",
            "SSE_HEARTBEAT_SECONDS": "1",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "SESSION_SECRET": secrets.token_urlsafe(48),
            # Bearer token for the gateways' `GET /metrics`.
            "METRICS_TOKEN": secrets.token_urlsafe(32),
            "ADMIN_API_KEY": "nadzu_test_admin_" + secrets.token_urlsafe(32),
            # Each stack counts its rate limits apart from every other stack sharing the Redis server.
            "RATE_LIMIT_KEY_PREFIX": f"nadzu:test:{uuid.uuid4().hex[:12]}:",
            **GENEROUS_LIMITS,
        }
        base_env.update(env)
        return cls(nats=nats, database_url=base_env["DATABASE_URL"], downloads_dir=downloads, env=base_env)

    def _spawn(self, name: str, command: list[str], extra_env: dict[str, str]) -> Service:
        log_path = self.downloads_dir.parent / f"{self.downloads_dir.name}-{name}-{len(self.services)}.log"
        env = {**os.environ, **self.env, **extra_env}
        env.pop("CI", None)
        metrics_port: int | None = None
        if name != "gateway":
            # A free port per process unless the caller chose one, so stacks and replicas never collide.
            env.setdefault("METRICS_PORT", str(free_port()))
            metrics_port = int(env["METRICS_PORT"]) if env["METRICS_PORT"] else None
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
        service = Service(name, process, log_path, metrics_port)
        self.services.append(service)
        return service

    @property
    def admin_key(self) -> str:
        return self.env["ADMIN_API_KEY"]

    def start_auth(self, **extra_env: str) -> Service:
        """Start an auth replica and wait until it replies to a health query."""
        service = self._spawn("auth", [str(BIN / "nadzu-auth")], extra_env)
        self._wait_for_reply(service, "auth.rpc.health", b"{}")
        if self.auth is None:
            self.auth = service
        return service

    def create_key(
        self, name: str = "test", scopes: list[str] | None = None, tier: str = "default", **fields: object
    ) -> dict[str, object]:
        """Create an API key with the admin key, over the bus; return its `key` secret and `info`."""
        import asyncio

        import nats

        from nadzu_common.auth import AuthClient, CreateKeyCommand, hash_api_key

        async def create() -> dict[str, object]:
            nc = await nats.connect(self.nats.url)
            try:
                command = CreateKeyCommand.model_validate(
                    {
                        "actor_key_hash": hash_api_key(self.admin_key),
                        "name": name,
                        "scopes": scopes or ["downloads"],
                        "tier": tier,
                        **fields,
                    }
                )
                reply = await AuthClient(nc, 10).create_key(command)
            finally:
                await nc.close()
            assert reply.error is None, reply.error
            assert reply.info is not None
            return {"key": reply.key, "info": reply.info.model_dump(mode="json")}

        return asyncio.run(create())

    def start_gateway(self, **extra_env: str) -> Gateway:
        """Start a gateway replica, and an auth replica first when the stack has none."""
        if self.auth is None or not self.auth.alive():
            self.start_auth()
        port = free_port()
        env = {"GATEWAY_PORT": str(port), "GATEWAY_HOST": "127.0.0.1", **extra_env}
        if self.user_key is None:
            self.user_key = str(self.create_key("test-user")["key"])
        service = self._spawn("gateway", [str(BIN / "nadzu-gateway")], env)
        metrics_token = {**self.env, **extra_env}.get("METRICS_TOKEN") or None
        gateway = Gateway(service, f"http://127.0.0.1:{port}", self.user_key, metrics_token)
        gateway.wait_started()
        return gateway

    def start_contributions(self, **extra_env: str) -> Service:
        """Start a contributions replica and wait until it replies to a health query."""
        from nadzu_common.contributions import CONTRIBUTIONS_HEALTH

        service = self._spawn("contributions", [str(BIN / "nadzu-contributions")], extra_env)
        self._wait_for_reply(service, CONTRIBUTIONS_HEALTH, b"{}")
        return service

    def start_downloader(self, wait: bool = True, **extra_env: str) -> Service:
        service = self._spawn("downloader", [str(BIN / "nadzu-downloader")], extra_env)
        if wait:
            self.wait_downloader_ready(service)
        return service

    def wait_downloader_ready(self, service: Service, timeout: float = 60.0) -> None:
        """Wait until the downloader answers a health query and has started fetching work."""
        from nadzu_common.bus import Subjects, encode
        from nadzu_common.messages import HealthQuery

        self._wait_for_reply(service, Subjects.DOWNLOAD_HEALTH, encode(HealthQuery()), timeout)
        # Any replica may answer that query, so a second replica is ready only once its own log says
        # so (when the log level shows INFO lines).
        if self.env.get("LOG_LEVEL", "INFO").upper() not in ("DEBUG", "INFO"):
            return
        deadline = time.monotonic() + timeout
        while "downloader.started" not in service.log_path.read_text(errors="replace"):
            if not service.alive():
                raise RuntimeError(f"downloader exited:\n{service.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"downloader not started after {timeout} s:\n{service.log()}")
            time.sleep(0.1)

    def _wait_for_reply(self, service: Service, subject: str, body: bytes, timeout: float = 60.0) -> None:
        import asyncio

        import nats
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeoutError

        async def wait() -> None:
            nc = await nats.connect(self.nats.url)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            try:
                while loop.time() < deadline:
                    if not service.alive():
                        raise RuntimeError(f"{service.name} exited:\n{service.log()}")
                    try:
                        await nc.request(subject, body, timeout=1)
                        return
                    except (NoRespondersError, NatsTimeoutError):
                        await asyncio.sleep(0.1)
            finally:
                await nc.close()
            raise TimeoutError(f"{service.name} not ready after {timeout} s:\n{service.log()}")

        asyncio.run(wait())

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop(timeout=15)
        self.nats.stop()
        drop_database(self.database_url)
        shutil.rmtree(self.downloads_dir, ignore_errors=True)


@dataclass
class Gateway:
    service: Service
    base_url: str
    api_key: str
    # The METRICS_TOKEN it was started with; None when it serves no metrics.
    metrics_token: str | None = None

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def client(self, **options: Any) -> httpx.Client:
        """An HTTP client for this gateway that sends the stack's `downloads` key."""
        return httpx.Client(base_url=self.base_url, headers=self.auth_headers, **options)

    def wait_started(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.service.alive():
                raise RuntimeError(f"gateway exited:\n{self.service.log()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"gateway not started after {timeout} s")


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, object]]:
    """Parse a `text/event-stream` body into events: `{"event", "id", "data"}`, and comments."""
    event: dict[str, object] = {}
    data: list[str] = []
    for line in lines:
        if line == "":
            if data or event:
                if data:
                    event["data"] = json.loads("\n".join(data))
                yield event
            event, data = {}, []
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name in ("event", "id", "retry"):
                event[name] = value
