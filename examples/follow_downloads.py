"""Follow download jobs on the bus and print each event as one JSON line.

    python examples/follow_downloads.py --job JOB_ID                  # one job, from its first event
    python examples/follow_downloads.py --all                          # every job, new events only
    python examples/follow_downloads.py --all --start-sequence 1200    # every job, replayed from 1200

It needs only nats-py and the standard library, so it runs outside this repository too. It reads
`downloads.evt.<job_id>` from the JetStream stream `DOWNLOADS_EVENTS` with an ordered consumer, which
keeps nothing on the server after it exits. With `--job` it stops after the job's terminal event
(`completed`, `failed` or `cancelled`). Exit status: 0 after a terminal event or `--limit` events,
1 when `--timeout` passes first, 2 for invalid arguments.

Each line has `sequence` (the stream sequence, the same number the gateway sends as the SSE `id`),
`subject`, `event`, `job_id`, `status` and `changed`. `--full` adds `job`, the job's whole state.
Payloads of a version other than 1 are reported on stderr and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

STREAM = "DOWNLOADS_EVENTS"
SUBJECT_PREFIX = "downloads.evt."
TERMINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})
SUPPORTED_VERSION = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222", help="NATS server URL")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--job", type=uuid.UUID, help="follow this job id until its terminal event")
    target.add_argument("--all", action="store_true", help="follow every job, until interrupted")
    parser.add_argument(
        "--start-sequence",
        type=int,
        help="replay from this stream sequence (an SSE `id`) on. Default: the job's first event with "
        "--job, only new events with --all",
    )
    parser.add_argument("--limit", type=int, help="stop after printing this many events")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds (exit status 1)")
    parser.add_argument("--full", action="store_true", help="print each event's whole job state too")
    args = parser.parse_args(argv)
    if args.start_sequence is not None and args.start_sequence < 1:
        parser.error(f"--start-sequence must be 1 or more, got {args.start_sequence}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be 1 or more, got {args.limit}")
    return args


def consumer_config(args: argparse.Namespace) -> ConsumerConfig:
    if args.start_sequence is not None:
        return ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=args.start_sequence
        )
    if args.job is not None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)


def describe(sequence: int, subject: str, event: dict[str, Any], full: bool) -> dict[str, Any]:
    job = event.get("job", {})
    line = {
        "sequence": sequence,
        "subject": subject,
        "event": event.get("event"),
        "job_id": job.get("id"),
        "status": job.get("status"),
        "changed": event.get("changed", []),
    }
    if full:
        line["job"] = job
    return line


async def follow(args: argparse.Namespace) -> int:
    """Print events until a stop condition and return the exit status."""
    subject = f"{SUBJECT_PREFIX}{args.job}" if args.job is not None else f"{SUBJECT_PREFIX}>"
    client = await nats.connect(args.nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        subscription = await client.jetstream().subscribe(
            subject, stream=STREAM, ordered_consumer=True, config=consumer_config(args)
        )
        printed = 0
        async for message in subscription.messages:
            sequence = message.metadata.sequence.stream
            event = json.loads(message.data)
            if event.get("v") != SUPPORTED_VERSION:
                print(f"skipped sequence {sequence}: payload version {event.get('v')!r}", file=sys.stderr)
                continue

            print(json.dumps(describe(sequence, message.subject, event, args.full)), flush=True)
            printed += 1
            if args.job is not None and event.get("event") in TERMINAL_EVENTS:
                return 0
            if args.limit is not None and printed >= args.limit:
                return 0
    finally:
        await client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(asyncio.wait_for(follow(args), args.timeout))
    except TimeoutError:
        print(f"timed out after {args.timeout:g} s without a stop condition", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
