"""Egress: every connection of a download passes the guard, and with a proxy set, the proxy only.

The isolated media host lives in a network namespace of its own: its media server listens on the
namespace's loopback, reachable only through the SOCKS5 proxy beside it. A download that went around
the proxy would find nothing on this host's 127.0.0.1 at that port, so a leak fails instead of passing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nadzu_common.testing.media import MediaServer
from nadzu_downloader.egress import EgressGuard
from tests.support.stack import Stack, free_port

from .conftest import create_job, finish

# ---- the guard on its own -------------------------------------------------------------------------


async def _ask(guard: EgressGuard, request: str, job: str = "job-1") -> bytes:
    port = int(guard.proxy_url(job).rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    credentials = base64.b64encode(f"{job}:x".encode()).decode()
    writer.write(f"{request}\r\nProxy-Authorization: Basic {credentials}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.read(200)
    writer.close()
    return head


@pytest.mark.parametrize(
    "request_line",
    [
        "CONNECT 127.0.0.1:443 HTTP/1.1",
        "CONNECT localhost:443 HTTP/1.1",
        "CONNECT [::1]:443 HTTP/1.1",
        "CONNECT [::ffff:127.0.0.1]:443 HTTP/1.1",
        "CONNECT 169.254.169.254:80 HTTP/1.1",
        "CONNECT 10.20.30.40:443 HTTP/1.1",
        "CONNECT 2130706433:80 HTTP/1.1",
        "GET http://127.0.0.1:9/ HTTP/1.1",
        "GET http://0x7f.1/ HTTP/1.1",
    ],
)
async def test_guard_rejects_private_targets(request_line: str) -> None:
    guard = EgressGuard(allow_private=False, upstream_url=None)
    await guard.start()
    try:
        head = await _ask(guard, request_line)
        assert head.startswith(b"HTTP/1.1 403"), head
        assert guard.report("job-1").rejected, "the rejection is recorded for the job"
    finally:
        await guard.stop()


async def test_guard_relays_allowed_targets(media_root: Path) -> None:
    server = MediaServer(media_root).start()
    guard = EgressGuard(allow_private=True, upstream_url=None)
    await guard.start()
    try:
        host, port = server.base_url.removeprefix("http://").split(":")
        plain = await _ask(guard, f"GET http://{host}:{port}/clip.mp4 HTTP/1.1\r\nHost: {host}:{port}")
        assert plain.startswith(b"HTTP/1.0 200") or plain.startswith(b"HTTP/1.1 200"), plain
        tunnel = await _ask(guard, f"CONNECT {host}:{port} HTTP/1.1")
        assert tunnel.startswith(b"HTTP/1.1 200 Connection established")
        assert guard.report("job-1").connections == 2
        assert guard.report("job-1").rejected == []
    finally:
        await guard.stop()
        server.stop()


async def test_guard_reports_dead_upstream() -> None:
    guard = EgressGuard(allow_private=True, upstream_url=f"socks5h://127.0.0.1:{free_port()}")
    await guard.start()
    try:
        assert await guard.check_upstream() is not None
        head = await _ask(guard, "CONNECT 127.0.0.1:80 HTTP/1.1")
        assert head.startswith(b"HTTP/1.1 502")
        assert guard.report("job-1").upstream_failures
    finally:
        await guard.stop()


# ---- downloads through an isolated host ---------------------------------------------------------


@dataclass
class IsolatedHost:
    namespace: str
    socks_url: str
    media_port: int
    count_file: Path
    process: subprocess.Popen[bytes]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.media_port}/{name}"

    def relayed(self) -> int:
        text = self.count_file.read_text() if self.count_file.exists() else "0 0"
        return int(text.split()[0])

    def stop_proxy(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True)


@pytest.fixture
def isolated_host(media_root: Path, tmp_path: Path) -> Iterator[IsolatedHost]:
    if os.geteuid() != 0:
        pytest.fail("the egress tests build a network namespace and need root, as CI has")
    suffix = uuid.uuid4().hex[:6]
    namespace, host_link, inner_link = f"nz-{suffix}", f"nzh{suffix}", f"nzn{suffix}"
    octet = int(suffix[:2], 16)
    host_address, inner_address = f"10.213.{octet}.1", f"10.213.{octet}.2"
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", host_link, "type", "veth", "peer", "name", inner_link)
        _ip("link", "set", inner_link, "netns", namespace)
        _ip("addr", "add", f"{host_address}/30", "dev", host_link)
        _ip("link", "set", host_link, "up")
        _ip("netns", "exec", namespace, "ip", "addr", "add", f"{inner_address}/30", "dev", inner_link)
        _ip("netns", "exec", namespace, "ip", "link", "set", inner_link, "up")
        _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")

        # A port nothing on this host listens on, so a direct connection is refused.
        media_port = free_port()
        count_file = tmp_path / "socks-count"
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                sys.executable,
                "-m",
                "nadzu_common.testing.isolated_host",
                str(media_root),
                str(media_port),
                inner_address,
                "1080",
                str(count_file),
            ],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"ready"
        yield IsolatedHost(namespace, f"socks5h://{inner_address}:1080", media_port, count_file, process)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_link], check=False, capture_output=True)


def test_downloads_go_only_through_proxy(
    own_stack: Stack, isolated_host: IsolatedHost, media_root: Path
) -> None:
    gateway = own_stack.start_gateway()
    own_stack.start_downloader(DOWNLOADER_PROXY_URL=isolated_host.socks_url, DOWNLOADER_ARIA2C="true")
    expected = 0
    with gateway.client(timeout=60) as client:
        for name, fmt in [
            ("clip.mp4", None),
            ("hls/index.m3u8", None),
            ("page.html", None),
            ("clip.mp4", "audio"),
        ]:
            job = finish(client, create_job(client, isolated_host.url(name), fmt)["id"])
            assert job["status"] == "completed", job
            if name == "clip.mp4" and fmt is None:
                digest = hashlib.sha256((media_root / "clip.mp4").read_bytes()).hexdigest()
                assert job["result"]["sha256"] == digest
                expected += job["result"]["size"]
    assert isolated_host.relayed() >= expected


def test_proxy_down_fails_without_direct_egress(own_stack: Stack, isolated_host: IsolatedHost) -> None:
    gateway = own_stack.start_gateway()
    own_stack.start_downloader(DOWNLOADER_PROXY_URL=isolated_host.socks_url, DOWNLOADER_MAX_ATTEMPTS="2")
    isolated_host.stop_proxy()
    with gateway.client(timeout=60) as client:
        ready = client.get("/health/ready").json()
        assert ready["checks"]["downloader"]["status"] == "unavailable"
        assert "proxy" in ready["checks"]["downloader"]["detail"]
        assert ready["checks"]["proxy"]["status"] == "unavailable"
        assert "unreachable" in ready["checks"]["proxy"]["detail"]

        job = finish(client, create_job(client, isolated_host.url("clip.mp4"))["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "proxy-unavailable"
    assert job["attempts"] == 2
