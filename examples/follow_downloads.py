"""Follow download jobs on the bus and print each event as one JSON line.

    python examples/follow_downloads.py --job JOB_ID                  # one job, from its first event
    python examples/follow_downloads.py --all                          # every job, new events only
    python examples/follow_downloads.py --all --start-sequence 1200    # every job, replayed from 1200

It needs only nats-py and the standard library, so it runs outside this repository too. It reads
`downloads.evt.<job_id>` from the JetStream stream `DOWNLOADS_EVENTS` with an ordered consumer, which
keeps nothing on the server after it exits. With `--job` it stops after the job's terminal event
(`completed`, `failed` or `cancelled`). Exit status: 0 after a terminal event or `--limit` events,
1 when `--timeout` passes first or NATS fails (one line on stderr explains why), 2 for invalid arguments.

Each line has `sequence` (the stream sequence, the same number the gateway sends as the SSE `id`),
`subject`, `event`, `job_id`, `status` and `changed`. `--full` adds `job`, the job's whole state.
Payloads of a version other than 1 are reported on stderr and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError, NoServersError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError, ServiceUnavailableError

STREAM = "DOWNLOADS_EVENTS"
SUBJECT_PREFIX = "downloads.evt."
TERMINAL_EVENTS = frozenset({"completed", "failed", "cancelled"})
SUPPORTED_VERSION = 1
NATS_URL_SCHEMES = ("nats", "tls", "ws", "wss")
# Seconds one connection attempt may take, and attempts after the first, before giving up.
CONNECT_TIMEOUT_SECONDS = 5
MAX_RECONNECT_ATTEMPTS = 3


class FollowError(Exception):
    """A failure to report as one line on stderr, with exit status 1."""


@dataclass
class Connection:
    """State of the NATS connection, for the error message when the follower stops."""

    url: str
    connected: bool = False
    errors: list[Exception] = field(default_factory=list)

    async def record_error(self, error: Exception) -> None:
        # Replaces nats-py's default callback, which logs a whole traceback for every failed attempt.
        self.errors.append(error)

    def last_error(self) -> str:
        if not self.errors:
            return "no error reported"
        error = self.errors[-1]
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--nats-url", default="nats://127.0.0.1:4222", help="NATS server URL (default: %(default)s)"
    )
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
    parser.add_argument(
        "--timeout", type=float, help="give up after this many seconds, more than 0 (exit status 1)"
    )
    parser.add_argument("--full", action="store_true", help="print each event's whole job state too")
    args = parser.parse_args(argv)

    if args.start_sequence is not None and args.start_sequence < 1:
        parser.error(f"--start-sequence must be 1 or more, got {args.start_sequence}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be 1 or more, got {args.limit}")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        parser.error(f"--timeout must be a number of seconds more than 0, got {args.timeout:g}")
    url = urlsplit(args.nats_url)
    if url.scheme not in NATS_URL_SCHEMES or not url.hostname:
        parser.error(
            f"--nats-url must be a URL such as nats://127.0.0.1:4222 with the scheme "
            f"{', '.join(NATS_URL_SCHEMES)}, got {args.nats_url!r}"
        )
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


async def connect(connection: Connection) -> nats.NATS:
    try:
        return await nats.connect(
            connection.url,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            max_reconnect_attempts=MAX_RECONNECT_ATTEMPTS,
            error_cb=connection.record_error,
        )
    except NoServersError:
        raise FollowError(
            f"connection to NATS at {connection.url} failed ({connection.last_error()}). "
            "Check that nats-server runs there, or pass its URL with --nats-url."
        ) from None


async def subscribe(client: nats.NATS, url: str, subject: str, config: ConsumerConfig) -> Any:
    try:
        return await client.jetstream().subscribe(
            subject, stream=STREAM, ordered_consumer=True, config=config
        )
    except (ServiceUnavailableError, NoRespondersError):
        raise FollowError(
            f"JetStream is not enabled on the NATS server at {url}. Start nats-server with -js, "
            "or pass the URL of the server that the Nadzu services use with --nats-url."
        ) from None
    except NotFoundError:
        raise FollowError(
            f"stream {STREAM} not found on the NATS server at {url}. Is this the server that the "
            "Nadzu services use? They create the stream when they start."
        ) from None


async def follow(args: argparse.Namespace, connection: Connection) -> int:
    """Print events until a stop condition and return the exit status."""
    subject = f"{SUBJECT_PREFIX}{args.job}" if args.job is not None else f"{SUBJECT_PREFIX}>"
    client = await connect(connection)
    connection.connected = True
    try:
        subscription = await subscribe(client, connection.url, subject, consumer_config(args))
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
    connection = Connection(args.nats_url)
    try:
        return asyncio.run(asyncio.wait_for(follow(args, connection), args.timeout))
    except TimeoutError:
        if not connection.connected:
            print(
                f"timed out after {args.timeout:g} s connecting to NATS at {args.nats_url} "
                f"({connection.last_error()})",
                file=sys.stderr,
            )
        else:
            print(f"timed out after {args.timeout:g} s without a stop condition", file=sys.stderr)
        return 1
    except FollowError as error:
        print(error, file=sys.stderr)
        return 1
    except NatsError as error:
        print(f"NATS at {args.nats_url} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
