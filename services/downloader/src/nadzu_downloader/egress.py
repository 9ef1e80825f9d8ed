"""The downloader's single egress point: an HTTP proxy on loopback that yt-dlp, aria2c and ffmpeg all use.

Every connection a download makes (extraction, media, fragments, redirect hops) arrives here as a CONNECT
or an absolute-form request. The guard resolves the host itself and rejects the connection when any address
is loopback, private, link-local, CGNAT, multicast or otherwise non-public (unless private URLs are
allowed). It then connects to the address it checked, so a DNS record that changes between check and
connect cannot redirect it. With `DOWNLOADER_PROXY_URL` set, the connection goes on through that SOCKS5
or HTTP proxy by address and never directly.

Trade-off: names are resolved by the downloader's own resolver, not by the upstream proxy (`socks5h`
would resolve at the proxy). The proxy then sees addresses, not names; that is what lets the guard
enforce the address rule on the connection that is really made.

Each job's workers use credentials `<job id>:x`, so the guard can tell the runner which job a rejected or
failed connection belonged to.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from python_socks.async_.asyncio import Proxy

from nadzu_common.logging import get_logger
from nadzu_common.netguard import IPAddress, is_forbidden_address, is_local_name, literal_address

log = get_logger(__name__)

# Bytes read per step when relaying; large reads keep the relay's CPU cost per byte low.
RELAY_CHUNK_BYTES = 256 * 1024
HEAD_LIMIT_BYTES = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 15.0


class EgressRejected(Exception):
    """The destination is not allowed."""


class UpstreamFailed(Exception):
    """The upstream proxy, or the destination, could not be reached."""


@dataclass
class JobEgress:
    """Record of one job's connections through the guard."""

    rejected: list[str] = field(default_factory=list)
    upstream_failures: list[str] = field(default_factory=list)
    connections: int = 0


class EgressGuard:
    def __init__(self, allow_private: bool, upstream_url: str | None) -> None:
        self.allow_private = allow_private
        self.upstream_url = upstream_url or None
        self._server: asyncio.AbstractServer | None = None
        self._port = 0
        self._jobs: dict[str, JobEgress] = defaultdict(JobEgress)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=HEAD_LIMIT_BYTES)
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("egress.started", port=self._port, upstream=_redact(self.upstream_url))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def proxy_url(self, job_id: uuid.UUID | str) -> str:
        """Return the proxy URL for a job's worker process, with the job id as the user name."""
        return f"http://{job_id}:x@127.0.0.1:{self._port}"

    def report(self, job_id: uuid.UUID | str) -> JobEgress:
        return self._jobs.get(str(job_id), JobEgress())

    def forget(self, job_id: uuid.UUID | str) -> None:
        self._jobs.pop(str(job_id), None)

    async def check_upstream(self) -> str | None:
        """Return None when the upstream proxy accepts connections, else why not (None without one)."""
        if self.upstream_url is None:
            return None
        parts = urlsplit(self.upstream_url)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port or 1080), timeout=3
            )
        except (OSError, TimeoutError) as error:
            return f"proxy unreachable: {type(error).__name__}"
        writer.close()
        return None

    # Deciding.

    async def resolve_allowed(self, host: str, port: int) -> IPAddress:
        """Resolve `host` and return the address to connect to, or raise `EgressRejected`."""
        if not self.allow_private and is_local_name(host):
            raise EgressRejected(f"{host} is a local name")
        literal = literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as error:
                raise UpstreamFailed(f"{host} could not be resolved: {error}") from None
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise UpstreamFailed(f"{host} has no address")
        if not self.allow_private:
            # One forbidden address rejects the name, because a name that resolves to both public and
            # private addresses is exactly what a rebinding attack looks like.
            forbidden = [str(address) for address in addresses if is_forbidden_address(address)]
            if forbidden:
                raise EgressRejected(f"{host} resolves to non-public {', '.join(forbidden)}")
        return addresses[0]

    async def _open(self, address: IPAddress, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self.upstream_url is None:
                return await asyncio.wait_for(
                    asyncio.open_connection(str(address), port, limit=RELAY_CHUNK_BYTES),
                    CONNECT_TIMEOUT_SECONDS,
                )
            proxy = Proxy.from_url(_connect_by_address(self.upstream_url), rdns=False)
            sock = await proxy.connect(
                dest_host=str(address), dest_port=port, timeout=CONNECT_TIMEOUT_SECONDS
            )
            return await asyncio.open_connection(sock=sock, limit=RELAY_CHUNK_BYTES)
        except Exception as error:  # python-socks and asyncio raise many kinds; all mean "not reachable"
            via = f" through {_redact(self.upstream_url)}" if self.upstream_url else ""
            raise UpstreamFailed(f"{address}:{port}{via}: {type(error).__name__}: {error}") from None

    # Serving.

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        job = "unknown"
        try:
            head = await client_reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            client_writer.close()
            return

        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            await _reply(client_writer, 400, "Bad Request")
            return
        headers = [line for line in lines[1:] if line]
        job = _job_from_headers(headers)
        record = self._jobs[job]
        record.connections += 1

        if method.upper() == "CONNECT":
            host, _, port_text = target.rpartition(":")
            host = host.strip("[]")
            forward_head = b""
        else:
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname:
                await _reply(client_writer, 400, "Bad Request")
                return
            host, port_text = parts.hostname, str(parts.port or 80)
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            # One request per upstream connection: the client may send its next request on this
            # connection for a different host, which must pass the guard again.
            kept = [
                line
                for line in headers
                if not line.lower().startswith(("proxy-", "connection:", "keep-alive:"))
            ]
            forward_head = "\r\n".join(
                [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
            ).encode("latin-1")

        try:
            port = int(port_text)
            address = await self.resolve_allowed(host, port)
            upstream_reader, upstream_writer = await self._open(address, port)
        except EgressRejected as error:
            record.rejected.append(str(error))
            log.warning("egress.rejected", job_id=job, host=host, reason=str(error))
            await _reply(client_writer, 403, "Forbidden")
            return
        except (UpstreamFailed, ValueError) as error:
            record.upstream_failures.append(str(error))
            log.warning("egress.upstream_failed", job_id=job, host=host, error=str(error))
            await _reply(client_writer, 502, "Bad Gateway")
            return

        if forward_head:
            upstream_writer.write(forward_head)
        else:
            client_writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(
            _relay(client_reader, upstream_writer),
            _relay(upstream_reader, client_writer),
            return_exceptions=True,
        )


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(RELAY_CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass
        writer.close()


async def _reply(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    try:
        await writer.drain()
    except ConnectionError:
        pass
    writer.close()


def _job_from_headers(headers: list[str]) -> str:
    for line in headers:
        name, _, value = line.partition(":")
        if name.strip().lower() != "proxy-authorization":
            continue
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "basic":
            break
        try:
            user = base64.b64decode(token).decode("utf-8", "replace").split(":", 1)[0]
        except ValueError:
            break
        return user or "unknown"
    return "unknown"


def _connect_by_address(url: str) -> str:
    """Return the upstream URL with `socks5h`/`socks4a` spelled as the plain scheme.

    The guard hands the proxy an address it already checked, so remote name resolution has nothing left
    to resolve. python-socks also accepts only the plain scheme names.
    """
    scheme, _, rest = url.partition("://")
    scheme = {"socks5h": "socks5", "socks4a": "socks4"}.get(scheme.lower(), scheme)
    return f"{scheme}://{rest}"


def _redact(url: str | None) -> str | None:
    """Return the URL without its password, for logs."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()
