"""A minimal pipelining Redis client for the rate limiter's one script call per request.

redis-py's asyncio client takes a connection from a pool, encodes and parses each command in Python and
returns the connection, for about 50 µs of CPU per command here; at several thousand requests a second
that is most of a core. This client keeps one connection, writes each command as soon as it is issued
(requests in flight share the connection, so writes and reads batch under load), and parses replies with
hiredis. Replies come back in command order, so each one resolves the oldest waiting future.

It runs `EVALSHA`, loading the script on `NOSCRIPT`, and nothing else. A failed or silent connection fails
every command in flight with `RedisUnavailable`; the next command reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

from nadzu_common.tracing import redis_span


class RedisUnavailable(Exception):
    """Redis could not be reached, failed, or did not reply within the timeout."""


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%b\r\n" % (len(part), part))
    return b"".join(out)


def _as_bytes(value: int | str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


class _RedisProtocol(asyncio.Protocol):
    def __init__(self, on_lost: Any) -> None:
        self.reader = hiredis.Reader()
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        # uvloop's transports do not subclass asyncio.Transport, so this is typed by what it does.
        self.transport: Any = None
        self._on_lost = on_lost
        # Commands issued during one event loop iteration go out in one write, saving a system call each.
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False

    def write(self, command: bytes) -> None:
        self._outgoing.append(command)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.transport is not None and self._outgoing:
            self.transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if not self.pending:
                # A reply nobody waits for means the stream is out of step; start over.
                self.fail(RedisUnavailable("unexpected reply from Redis"))
                return
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisUnavailable(f"connection to Redis lost: {exc!r}"))

    def fail(self, error: Exception) -> None:
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self._on_lost(self)


class PipelinedRedis:
    """Run Lua scripts on one pipelined connection to the Redis server at `url`."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", ""):
            raise ValueError(f"the rate limiter supports redis:// URLs only, got {parts.scheme}://")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._password = unquote(parts.password) if parts.password else None
        self._username = unquote(parts.username) if parts.username else None
        self._db = int(parts.path.lstrip("/") or 0)
        self._timeout = timeout_seconds
        self._protocol: _RedisProtocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def _connect(self) -> _RedisProtocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None:
                return self._protocol
            loop = asyncio.get_running_loop()
            try:
                _, protocol = await asyncio.wait_for(
                    loop.create_connection(lambda: _RedisProtocol(self._lost), self._host, self._port),
                    self._timeout,
                )
            except (OSError, TimeoutError) as error:
                raise RedisUnavailable(f"cannot connect to Redis: {error!r}") from None

            self._protocol = protocol
            setup: list[bytes] = []
            if self._password is not None:
                auth = [b"AUTH", self._password.encode()]
                if self._username:
                    auth.insert(1, self._username.encode())
                setup.append(_command(*auth))
            if self._db:
                setup.append(_command(b"SELECT", str(self._db).encode()))
            for command in setup:
                reply = await self._send(protocol, command)
                if isinstance(reply, hiredis.ReplyError):
                    protocol.fail(RedisUnavailable(f"Redis refused the connection set-up: {reply}"))
                    raise RedisUnavailable(f"Redis refused the connection set-up: {reply}")
            if self._watchdog is None:
                self._watchdog = asyncio.create_task(self._watch(), name="redis-timeout-watchdog")
            return protocol

    def _lost(self, protocol: _RedisProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    def _send(self, protocol: _RedisProtocol, command: bytes) -> asyncio.Future[Any]:
        if protocol.transport is None:
            raise RedisUnavailable("connection to Redis is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.pending.append((future, time.monotonic()))
        protocol.write(command)
        return future

    async def _watch(self) -> None:
        """Fail the connection when its oldest command has waited longer than the timeout."""
        while True:
            await asyncio.sleep(self._timeout / 2)
            protocol = self._protocol
            if protocol is not None and protocol.pending:
                _, sent_at = protocol.pending[0]
                if time.monotonic() - sent_at > self._timeout:
                    protocol.fail(RedisUnavailable(f"no reply from Redis within {self._timeout:g} s"))

    async def evalsha(self, script: Script, keys: list[str], args: list[int | str]) -> Any:
        with redis_span("EVALSHA", **{"server.address": self._host, "server.port": self._port}):
            return await self._evalsha(script, keys, args)

    async def _evalsha(self, script: Script, keys: list[str], args: list[int | str]) -> Any:
        protocol = self._protocol or await self._connect()
        parts = [b"EVALSHA", script.sha, str(len(keys)).encode()]
        parts += [key.encode() for key in keys]
        parts += [_as_bytes(arg) for arg in args]
        reply = await self._send(protocol, _command(*parts))
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            loaded = await self._send(protocol, _command(b"SCRIPT", b"LOAD", script.source))
            if isinstance(loaded, hiredis.ReplyError):
                raise RedisUnavailable(f"Redis did not load the script: {loaded}")
            reply = await self._send(protocol, _command(*parts))
        if isinstance(reply, hiredis.ReplyError):
            raise RedisUnavailable(f"Redis script failed: {reply}")
        return reply

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._protocol is not None:
            self._protocol.fail(RedisUnavailable("client closed"))


class Script:
    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source, usedforsecurity=False).hexdigest().encode()
