"""Benchmark: multi-connection downloads against a server that throttles each connection.

    .venv/bin/python bench/transfer.py [--rate-mb 5] [--runs 1]

A 150 MB file and an HLS cut of it are served on 127.0.0.1 at `--rate-mb` MB/s per connection. The
same warm worker code the downloader runs (`nadzu_downloader.worker.run_job`, hashing and ffprobe
validation included) fetches the file with aria2c (8 connections) and with yt-dlp's own downloader, beside
curl as a one-connection reference, then the HLS stream with 8 concurrent fragments and with one.
Prints a Markdown table for docs/benchmarks.md. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nadzu_common.testing.media import MediaServer, make_hls, make_video  # noqa: E402
from nadzu_common.testing.socks import CountingSocks5  # noqa: E402
from nadzu_downloader import worker  # noqa: E402
from nadzu_downloader.egress import EgressGuard  # noqa: E402
from tests.support.stack import free_port  # noqa: E402

CONNECTIONS = 8


class ProxyChain:
    """The downloader's egress guard chained to a counting SOCKS5 proxy, on a loop of their own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        socks_port = free_port()
        self.socks = CountingSocks5("127.0.0.1", socks_port)
        asyncio.run_coroutine_threadsafe(self.socks.serve(), self.loop)
        self.guard = EgressGuard(allow_private=True, upstream_url=f"socks5h://127.0.0.1:{socks_port}")
        asyncio.run_coroutine_threadsafe(self.guard.start(), self.loop).result(timeout=10)

    @property
    def url(self) -> str:
        return self.guard.proxy_url("bench")


def run_worker(url: str, aria2c: bool, fragments: int | None = None, proxy: str | None = None) -> float:
    job: dict[str, Any] = {
        "job_id": "bench",
        "url": url,
        "format": "video",
        "workdir": tempfile.mkdtemp(prefix="nadzu-transfer-"),
        "max_filesize": 10**11,
        "max_duration": 10**6,
        "stall_timeout": 60,
        "allow_private": True,
        "aria2c": aria2c,
        "proxy": proxy,
    }
    original = worker._options
    if fragments is not None:

        def with_fragments(*args: Any) -> dict[str, Any]:
            options = original(*args)
            options["concurrent_fragment_downloads"] = fragments
            return options

        worker._options = with_fragments  # type: ignore[assignment]
    started = time.perf_counter()
    try:
        worker.run_job(job, lambda message: None)
    finally:
        worker._options = original  # type: ignore[assignment]
    return time.perf_counter() - started


def run_curl(url: str, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-o", str(target), url], check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate-mb", type=float, default=5.0, help="MB/s per connection")
    parser.add_argument("--runs", type=int, default=1)
    arguments = parser.parse_args()
    rate = int(arguments.rate_mb * 1_000_000)

    with tempfile.TemporaryDirectory(prefix="nadzu-transfer-media-") as folder:
        root = Path(folder)
        print("bench: making a 150 MB file and its HLS cut with ffmpeg", file=sys.stderr)
        large = make_video(root / "large.mp4", seconds=60, size="1280x720", bitrate="20M", noise=True)
        make_hls(large, root / "hls", segment_seconds=2)
        size = large.stat().st_size
        server = MediaServer(root, rate_bytes_per_second=rate).start()
        file_url = server.url("large.mp4")
        hls_url = server.url("hls/index.m3u8")

        def median_of(measure: Any) -> float:
            return statistics.median(measure() for _ in range(arguments.runs))

        # The downloader's workers are warm; so is this process after one small job.
        worker._warm_up()
        print("bench: aria2c", file=sys.stderr)
        aria2c = median_of(lambda: run_worker(file_url, aria2c=True))
        print("bench: native", file=sys.stderr)
        native = median_of(lambda: run_worker(file_url, aria2c=False))
        print("bench: curl", file=sys.stderr)
        curl = median_of(lambda: run_curl(file_url, root / "curl.out"))
        print("bench: HLS", file=sys.stderr)
        hls_many = median_of(lambda: run_worker(hls_url, aria2c=False, fragments=CONNECTIONS))
        hls_one = median_of(lambda: run_worker(hls_url, aria2c=False, fragments=1))
        print("bench: through the egress guard and a SOCKS5 proxy", file=sys.stderr)
        chain = ProxyChain()
        aria2c_proxied = median_of(lambda: run_worker(file_url, aria2c=True, proxy=chain.url))
        hls_proxied = median_of(
            lambda: run_worker(hls_url, aria2c=False, fragments=CONNECTIONS, proxy=chain.url)
        )
        relayed = chain.socks.relayed
        server.stop()

    limit = size / (CONNECTIONS * rate)
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"File: {size:,} bytes; server: {arguments.rate_mb:g} MB/s per connection; physical limit with")
    print(f"{CONNECTIONS} connections: {limit:.2f} s")
    print()
    print("| download | time | speed-up over native | ÷ physical limit |")
    print("| --- | ---: | ---: | ---: |")
    label = f"aria2c, {CONNECTIONS} connections"
    print(f"| {label} | {aria2c:.2f} s | {native / aria2c:.2f}× | {aria2c / limit:.2f}× |")
    print(f"| yt-dlp native, 1 connection | {native:.2f} s | 1.00× | {native / limit:.2f}× |")
    print(f"| curl, 1 connection | {curl:.2f} s | {native / curl:.2f}× | {curl / limit:.2f}× |")
    label = f"HLS, {CONNECTIONS} concurrent fragments"
    print(f"| {label} | {hls_many:.2f} s | {hls_one / hls_many:.2f}× over 1 fragment | |")
    print(f"| HLS, 1 fragment at a time | {hls_one:.2f} s | 1.00× | |")
    print()
    print("Through the egress guard and a SOCKS5 proxy (both on loopback):")
    print()
    print("| download | direct | proxied | slower by |")
    print("| --- | ---: | ---: | ---: |")
    slower = aria2c_proxied / aria2c - 1
    print(f"| aria2c, {CONNECTIONS} connections | {aria2c:.2f} s | {aria2c_proxied:.2f} s | {slower:+.1%} |")
    label = f"HLS, {CONNECTIONS} concurrent fragments"
    print(f"| {label} | {hls_many:.2f} s | {hls_proxied:.2f} s | {hls_proxied / hls_many - 1:+.1%} |")
    print()
    print(f"The SOCKS5 proxy relayed {relayed:,} bytes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
