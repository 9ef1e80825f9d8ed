"""examples/follow_downloads.py against a real stack: a job followed to completion, a replay, and errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nadzu_common.testing.media import MediaServer, make_video
from tests.support.stack import ROOT, Gateway, NatsServer, Stack, free_port

EXAMPLE = ROOT / "examples" / "follow_downloads.py"
# Seconds the example may run before the test gives up on it. A 1-second clip downloads in about a second.
EXAMPLE_TIMEOUT_SECONDS = 60


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    root = Path(tempfile.mkdtemp(prefix="nadzu-media-"))
    make_video(root / "clip.mp4", seconds=1)
    server = MediaServer(root).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    stack = Stack.create()
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Gateway:
    gateway = stack.start_gateway()
    stack.start_downloader()
    return gateway


def run_example(stack: Stack, *arguments: str) -> list[dict[str, Any]]:
    """Run the example to its own stop condition and return the events it printed."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--nats-url", stack.nats.url, "--timeout", "50", *arguments],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr}"
    return [json.loads(line) for line in result.stdout.splitlines()]


def create_job(gateway: Gateway, media: MediaServer) -> str:
    with gateway.client(timeout=30) as client:
        response = client.post("/api/v1/downloads", json={"url": media.url("clip.mp4")})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_follows_job_to_completion(stack: Stack, gateway: Gateway, media: MediaServer) -> None:
    job_id = create_job(gateway, media)

    events = run_example(stack, "--job", job_id)

    names = [event["event"] for event in events]
    assert names[0] == "status"
    assert events[0]["status"] == "queued"
    assert "running" in [event["status"] for event in events]
    assert names[-1] == "completed"
    assert names.count("completed") == 1
    assert all(event["job_id"] == job_id for event in events)
    assert all(event["subject"] == f"downloads.evt.{job_id}" for event in events)
    sequences = [event["sequence"] for event in events]
    assert sequences == sorted(set(sequences))


def test_sequences_match_sse_ids(stack: Stack, gateway: Gateway, media: MediaServer) -> None:
    job_id = create_job(gateway, media)
    events = run_example(stack, "--job", job_id)

    # Resuming the SSE stream after the first event returns the rest, with the sequences as ids.
    with gateway.client(timeout=30) as client:
        first = str(events[0]["sequence"])
        with client.stream(
            "GET", f"/api/v1/downloads/{job_id}/events", headers={"Last-Event-ID": first}
        ) as response:
            assert response.status_code == 200
            ids = [line.removeprefix("id: ") for line in response.iter_lines() if line.startswith("id: ")]
    assert ids == [str(event["sequence"]) for event in events[1:]]


def test_replay_starts_at_sequence(stack: Stack, gateway: Gateway, media: MediaServer) -> None:
    job_id = create_job(gateway, media)
    full = run_example(stack, "--job", job_id)
    assert len(full) >= 3
    start = full[1]["sequence"]

    replayed = run_example(stack, "--job", job_id, "--start-sequence", str(start))

    assert replayed[0]["sequence"] == start
    assert replayed == full[1:]


def test_all_jobs_from_sequence(stack: Stack, gateway: Gateway, media: MediaServer) -> None:
    first_job = create_job(gateway, media)
    first = run_example(stack, "--job", first_job)
    second_job = create_job(gateway, media)
    second = run_example(stack, "--job", second_job)

    # From the first job's last event on, every job's events in stream order.
    start = first[-1]["sequence"]
    expected = [event for event in first + second if event["sequence"] >= start]
    expected.sort(key=lambda event: event["sequence"])
    replayed = run_example(stack, "--all", "--start-sequence", str(start), "--limit", str(len(expected)))

    assert replayed[0]["sequence"] == start
    assert [event["sequence"] for event in replayed] == [event["sequence"] for event in expected]
    assert {event["job_id"] for event in replayed} == {first_job, second_job}


def test_full_prints_job_state(stack: Stack, gateway: Gateway, media: MediaServer) -> None:
    job_id = create_job(gateway, media)

    events = run_example(stack, "--job", job_id, "--full")

    completed = events[-1]["job"]
    assert completed["id"] == job_id
    assert completed["status"] == "completed"
    assert completed["result"]["filename"]


def run_failing_example(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the example where it should fail, and check that it printed no traceback and no events."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *arguments],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_SECONDS,
    )
    assert result.stdout == ""
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--start-sequence", "0"], "--start-sequence must be 1 or more, got 0"),
        (["--limit", "0"], "--limit must be 1 or more, got 0"),
        (["--timeout", "-1"], "--timeout must be a number of seconds more than 0, got -1"),
        (["--timeout", "0"], "--timeout must be a number of seconds more than 0, got 0"),
        (["--timeout", "nan"], "--timeout must be a number of seconds more than 0, got nan"),
        (["--timeout", "inf"], "--timeout must be a number of seconds more than 0, got inf"),
        (["--timeout", "soon"], "argument --timeout: invalid float value: 'soon'"),
        (["--nats-url", "notaurl"], "--nats-url must be a URL such as nats://127.0.0.1:4222"),
        (["--nats-url", "http://127.0.0.1:8080"], "got 'http://127.0.0.1:8080'"),
        (["--nats-url", "nats://"], "got 'nats://'"),
    ],
)
def test_rejects_invalid_argument(arguments: list[str], message: str) -> None:
    result = run_failing_example("--all", *arguments)

    assert result.returncode == 2
    assert message in result.stderr


def test_unreachable_server_one_line() -> None:
    # Nothing listens on a port that was just free, so every connection attempt is refused at once.
    url = f"nats://127.0.0.1:{free_port()}"

    result = run_failing_example("--all", "--nats-url", url, "--timeout", "50")

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"connection to NATS at {url} failed (ConnectionRefusedError")
    assert "--nats-url" in lines[0]
    assert "timed out" not in lines[0]


def test_unreachable_server_timeout_names_cause() -> None:
    url = f"nats://127.0.0.1:{free_port()}"

    # Shorter than the attempts take, so the timeout ends the connection attempts.
    result = run_failing_example("--all", "--nats-url", url, "--timeout", "1")

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"timed out after 1 s connecting to NATS at {url} (ConnectionRefusedError")


def test_server_without_jetstream_one_line() -> None:
    server = NatsServer(jetstream=False).start()
    try:
        result = run_failing_example("--all", "--nats-url", server.url, "--timeout", "50")
    finally:
        server.stop()

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"JetStream is not enabled on the NATS server at {server.url}")


def test_server_without_stream_one_line() -> None:
    # JetStream is on, but no Nadzu service has created its streams on this server.
    server = NatsServer().start()
    try:
        result = run_failing_example("--all", "--nats-url", server.url, "--timeout", "50")
    finally:
        server.stop()

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"stream DOWNLOADS_EVENTS not found on the NATS server at {server.url}")


def test_times_out_without_terminal_event(stack: Stack, gateway: Gateway) -> None:
    # No job has this id, so no event ever comes.
    unknown = "0193b0c4-5f6e-7a1b-8c2d-3e4f5a6b7c8d"
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--nats-url", stack.nats.url, "--job", unknown, "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_SECONDS,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "timed out after 1 s" in result.stderr


def test_example_needs_no_project_code() -> None:
    # It is meant to be copied elsewhere: nats-py and the standard library only.
    imports = [line for line in EXAMPLE.read_text().splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in imports if "nadzu" in line], imports
