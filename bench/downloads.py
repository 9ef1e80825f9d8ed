"""Benchmark: enqueue → completed through the API, beside yt-dlp by hand and a warm yt-dlp loop.

    .venv/bin/python bench/downloads.py [--small-runs 20] [--large-runs 5] [--burst 50]

Everything runs on this machine against a local media server: a private NATS server and database, one
gateway and one downloader (default concurrency). Results are printed as a Markdown table for
docs/benchmarks.md. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nadzu_common.testing.media import MediaServer, make_video  # noqa: E402
from tests.support.stack import Stack, parse_sse  # noqa: E402


def make_media(root: Path) -> dict[str, Path]:
    small = make_video(root / "small.mp4", seconds=4, size="640x360", bitrate="2M")
    large = root / "large.mp4"
    # Noise does not compress, so a constant 20 Mb/s for 60 s gives about 150 MB.
    make_video(large, seconds=60, size="1280x720", bitrate="20M", noise=True)
    return {"1 MB": small, "150 MB": large}


def through_api(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    job = client.post("/api/v1/downloads", json={"url": url}).json()
    with client.stream("GET", f"/api/v1/downloads/{job['id']}/events", timeout=300) as response:
        for event in parse_sse(response.iter_lines()):
            if event.get("event") in ("completed", "failed", "cancelled"):
                elapsed = time.perf_counter() - started
                if event["event"] != "completed":
                    raise RuntimeError(f"job ended {event}")
                return elapsed
    raise RuntimeError("stream ended without a terminal event")


def by_hand(url: str, workdir: Path) -> float:
    target = workdir / "by-hand.%(ext)s"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "yt_dlp", "-q", "--no-progress", "--force-overwrites", "-o", str(target), url],
        check=True,
    )
    return time.perf_counter() - started


class WarmLoop:
    """The floor: one process that has imported yt-dlp calls `YoutubeDL.download()` per job.

    Each run writes a new file, as every job does. Overwriting one path again and again is faster on
    this machine's file system (the freed blocks are reused), so `reuse_path=True` measures that too.
    """

    def __init__(self, workdir: Path) -> None:
        from yt_dlp import YoutubeDL

        self.factory = YoutubeDL
        self.workdir = workdir

    def run(self, url: str, reuse_path: bool = False) -> float:
        name = "floor" if reuse_path else f"floor-{time.perf_counter_ns()}"
        options = {
            "quiet": True,
            "noprogress": True,
            "overwrites": True,
            "outtmpl": str(self.workdir / f"{name}.%(ext)s"),
        }
        started = time.perf_counter()
        with self.factory(options) as ydl:
            ydl.download([url])
        return time.perf_counter() - started


def burst(client: httpx.Client, url: str, count: int) -> float:
    """Enqueue `count` jobs at once and wait for all; return the wall time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        durations = list(pool.map(lambda _: through_api(client, url), range(count)))
    assert len(durations) == count
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small-runs", type=int, default=20)
    parser.add_argument("--large-runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=50)
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nadzu-bench-") as folder:
        root = Path(folder)
        media_root = root / "media"
        print("bench: making media with ffmpeg", file=sys.stderr)
        media = make_media(media_root)
        stack = Stack.create(
            DOWNLOADER_CONCURRENCY="4", LOG_LEVEL="WARNING", DOWNLOADER_ACK_WAIT_SECONDS="60"
        )
        try:
            gateway = stack.start_gateway()
            stack.start_downloader()
            server = MediaServer(media_root).start()
            warm = WarmLoop(root)
            rows = []
            key = stack.create_key("bench-downloads")["key"]
            headers = {"X-API-Key": str(key)}
            with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=60) as client:
                through_api(client, server.url("small.mp4"))  # first job warms caches on every side
                for label, path in media.items():
                    runs = arguments.small_runs if label == "1 MB" else arguments.large_runs
                    url = server.url(path.name)
                    size = path.stat().st_size
                    print(f"bench: {label} ({size} bytes), {runs} runs each", file=sys.stderr)
                    api = [through_api(client, url) for _ in range(runs)]
                    hand = [by_hand(url, root) for _ in range(runs)]
                    floor = [warm.run(url) for _ in range(runs)]
                    same_path = [warm.run(url, reuse_path=True) for _ in range(runs)]
                    rows.append((label, size, median(api), median(hand), median(floor), median(same_path)))

                print(f"bench: {arguments.burst} small jobs at once", file=sys.stderr)
                burst_seconds = burst(client, server.url("small.mp4"), arguments.burst)
            server.stop()
        finally:
            stack.close()

    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| file | size | API enqueue → completed | yt-dlp by hand | warm loop (floor) | API ÷ floor |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, size, api, hand, floor, _ in rows:
        print(f"| {label} | {size:,} B | {api:.3f} s | {hand:.3f} s | {floor:.3f} s | {api / floor:.2f}× |")
    print()
    print("The floor writes a new file per run, as a job does. Overwriting one path every run instead:")
    for label, _, api, _, _, same_path in rows:
        print(f"- {label}: {same_path:.3f} s, API ÷ that {api / same_path:.2f}×")
    per_job = burst_seconds / arguments.burst
    print()
    print(
        f"{arguments.burst} small jobs queued at once (concurrency 4): "
        f"{burst_seconds:.2f} s in all, {per_job:.3f} s per job"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
