"""Fixtures for the auth service tests: a private NATS server, a database per test, a fake siteverify.

Each pytest-xdist worker starts its own nats-server on a free port with a temporary store, so workers
never share subjects or streams. Each test that needs PostgreSQL gets a database of its own.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient

from nadzu_auth.service import AuthService, running_service
from nadzu_auth.settings import AuthSettings
from nadzu_common.auth import AuthClient

from .fake_recaptcha import FakeRecaptcha, FakeRecaptchaServer

POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SESSION_SECRET = "test-session-secret-" + "x" * 32
ADMIN_KEY = "operator-chosen-admin-secret-0123456789abcdef"
RECAPTCHA_SECRET = "6Le-test-recaptcha-secret"
NATS_SERVER = Path(sys.executable).parent / "nats-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    store = tmp_path_factory.mktemp("nats-store")
    process = subprocess.Popen(
        [str(NATS_SERVER), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None

    # The server logs "Server is ready" once it accepts clients; wait for that line, not for a delay.
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if "Server is ready" in line:
            break
    else:
        process.wait()
        raise RuntimeError("nats-server exited before it was ready:\n" + "".join(seen))

    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()


@pytest_asyncio.fixture
async def database_url() -> AsyncIterator[str]:
    name = f"nadzu_test_auth_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's database, to inspect or adjust what the service stored."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def fake_recaptcha() -> Iterator[tuple[FakeRecaptcha, str]]:
    fake = FakeRecaptcha(secret=RECAPTCHA_SECRET)
    with FakeRecaptchaServer(fake) as server:
        yield fake, server.verify_url


@pytest.fixture
def make_settings(nats_url: str, database_url: str) -> Callable[..., AuthSettings]:
    def build(**overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "nats_url": nats_url,
            "database_url": database_url,
            "session_secret": SESSION_SECRET,
            "admin_api_key": ADMIN_KEY,
            "recaptcha_secret": None,
            "log_format": "json",
        }
        values.update(overrides)
        return AuthSettings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


StartService = Callable[..., AbstractAsyncContextManager[AuthService]]


@pytest.fixture
def start_service(make_settings: Callable[..., AuthSettings], nc: NatsClient) -> StartService:
    """Return a function that starts an auth service with settings overrides, as an async context manager."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[AuthService]:
        async with running_service(make_settings(**overrides)) as running:
            # nats-server 2.15.1 sometimes returns "no responders" to a request for a subject that another
            # connection has just subscribed and flushed, unless the requesting connection flushes too.
            await nc.flush()
            yield running

    return start


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    try:
        yield client
    finally:
        await client.drain()


@pytest.fixture
def auth(nc: NatsClient) -> AuthClient:
    return AuthClient(nc, timeout_seconds=5.0)


@pytest_asyncio.fixture
async def service(start_service: StartService) -> AsyncIterator[AuthService]:
    """A running auth service with the bootstrap admin key and captcha off."""
    async with start_service() as running:
        yield running
