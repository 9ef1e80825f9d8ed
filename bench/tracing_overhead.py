"""Measure what tracing costs on the enqueue path: `POST /api/v1/downloads` with tracing off and on.

    .venv/bin/python bench/tracing_overhead.py [--sequential 1500] [--concurrent 3000] [--rounds 2]

Each round starts a fresh stack per mode (private NATS, scratch database, one auth replica, one gateway
worker, no downloader, so every request stops at the 202 after its two JetStream publishes). "on" exports
every span (parentbased_always_on) over OTLP/HTTP to a local receiver that decodes each export as a
collector does (tests/support/otlp.py). "sampled" keeps one trace in ten (parentbased_traceidratio 0.1).
"off" sets no OTEL_* variable. Modes alternate within a round so
slow drift of the machine hits both. Figures per mode are medians over the rounds:

- sequential: one keep-alive client, one request at a time, latency percentiles;
- concurrent: `--workers` clients at once, requests per second;
- gateway CPU: user+system seconds of the gateway process during the concurrent phase, per request.

Prints Markdown for docs/benchmarks.md. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.otlp import OtlpReceiver  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

# "sampled" is tracing on with one trace in ten kept, as the Kubernetes base configures it.
MODES = ("off", "on", "sampled")
# No downloader runs, so every job stays queued and counts against the caller's active-jobs cap.
UNCAPPED = {"MAX_ACTIVE_JOBS_PER_CALLER": "10000000", "LOG_LEVEL": "WARNING"}


@dataclass
class Run:
    mode: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests_per_second: float
    cpu_ms_per_request: float
    spans_exported: int


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of /proc/<pid>/stat; the split drops the first two.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def sequential_latencies(base_url: str, headers: dict[str, str], count: int, tag: str) -> list[float]:
    latencies = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for number in range(count):
            body = {"url": f"http://127.0.0.1:9/{tag}/seq-{number}.mp4"}
            started = time.perf_counter()
            response = client.post("/api/v1/downloads", json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 202:
                raise RuntimeError(f"enqueue failed with {response.status_code}: {response.text}")
    return latencies


async def concurrent_rate(
    base_url: str, headers: dict[str, str], count: int, workers: int, tag: str
) -> float:
    numbers = iter(range(count))
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)

    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as client:

        async def worker() -> None:
            for number in numbers:
                body = {"url": f"http://127.0.0.1:9/{tag}/par-{number}.mp4"}
                response = await client.post("/api/v1/downloads", json=body)
                if response.status_code != 202:
                    raise RuntimeError(f"enqueue failed with {response.status_code}: {response.text}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return count / (time.perf_counter() - started)


def measure(mode: str, receiver: OtlpReceiver, args: argparse.Namespace, round_number: int) -> Run:
    env = dict(UNCAPPED)
    if mode != "off":
        env.update(receiver.env())
        env["OTEL_BSP_SCHEDULE_DELAY"] = "1000"  # the SDK's default is 5000 ms; 1 s keeps the queue short
        if args.export_batch_size:
            env["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] = str(args.export_batch_size)
    if mode == "sampled":
        env.update(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG="0.1")
    saved_otel = {key: os.environ.pop(key) for key in list(os.environ) if key.startswith("OTEL_")}
    stack = Stack.create(**env)
    try:
        gateway = stack.start_gateway()
        headers = gateway.auth_headers
        tag = f"{mode}-{round_number}"
        sequential_latencies(gateway.base_url, headers, 100, f"{tag}-warm")
        spans_before = receiver.span_count

        latencies = sequential_latencies(gateway.base_url, headers, args.sequential, tag)
        pid = gateway.service.process.pid
        cpu_before = process_cpu_seconds(pid)
        rate = asyncio.run(concurrent_rate(gateway.base_url, headers, args.concurrent, args.workers, tag))
        cpu_used = process_cpu_seconds(pid) - cpu_before
    finally:
        # Stopping the gateway flushes its exporter, so every span it made has arrived after this.
        stack.close()
        os.environ.update(saved_otel)
    return Run(
        mode=mode,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p90_ms=percentile(latencies, 0.90) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        requests_per_second=rate,
        cpu_ms_per_request=cpu_used / args.concurrent * 1000,
        spans_exported=receiver.span_count - spans_before,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=1500, help="sequential requests per run")
    parser.add_argument("--concurrent", type=int, default=3000, help="concurrent requests per run")
    parser.add_argument("--workers", type=int, default=16, help="clients sending at once")
    parser.add_argument("--rounds", type=int, default=2, help="runs per mode, alternating")
    parser.add_argument(
        "--export-batch-size", type=int, default=0, help="OTEL_BSP_MAX_EXPORT_BATCH_SIZE (SDK default 512)"
    )
    args = parser.parse_args()

    receiver = OtlpReceiver(keep_spans=False).start()
    runs: list[Run] = []
    try:
        for round_number in range(args.rounds):
            for mode in MODES:
                run = measure(mode, receiver, args, round_number)
                runs.append(run)
                print(f"# round {round_number + 1} {mode}: {run}", file=sys.stderr)
    finally:
        receiver.stop()

    def median(mode: str, field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs if run.mode == mode)

    total = args.sequential + args.concurrent
    print(
        f"Machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f} at the end. {args.rounds} rounds per mode, medians.\n"
    )
    print("| | tracing off | tracing on | on / off | on, 10 % sampled | sampled / off |")
    print("|---|---|---|---|---|---|")
    for label, field, digits in (
        ("sequential p50, ms", "p50_ms", 2),
        ("sequential p90, ms", "p90_ms", 2),
        ("sequential p99, ms", "p99_ms", 2),
        (f"concurrent ({args.workers} clients), requests/s", "requests_per_second", 0),
        ("gateway CPU per request, ms", "cpu_ms_per_request", 3),
    ):
        off, on, sampled = median("off", field), median("on", field), median("sampled", field)
        print(
            f"| {label} | {off:.{digits}f} | {on:.{digits}f} | {on / off:.2f}× "
            f"| {sampled:.{digits}f} | {sampled / off:.2f}× |"
        )
    spans = median("on", "spans_exported")
    print(f"\nSpans exported per request with tracing on: {spans / total:.1f} ({spans:.0f} for {total}).")


if __name__ == "__main__":
    main()
