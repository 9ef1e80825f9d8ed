"""Job events over SSE: snapshot, order, resume, end of stream, heartbeats."""

from __future__ import annotations

import httpx

from tests.support.stack import parse_sse

from .conftest import Media, create_job, read_events, wait_for


def test_stream_ends_after_terminal_event(client: httpx.Client, media: Media) -> None:
    job = create_job(client, media.url("clip.mp4"))
    events = read_events(client, job["id"])
    ids = [int(event["id"]) for event in events]
    assert ids == sorted(set(ids)), "ids increase strictly"
    assert events[-1]["event"] == "completed"
    assert [event["event"] for event in events].count("completed") == 1
    for event in events:
        assert event["data"]["job_id"] == job["id"]
        assert "status" in event["data"]


def test_late_joiner_gets_snapshot_first(client: httpx.Client, media: Media) -> None:
    name, gate = media.gated_copy()
    job = create_job(client, media.url(name))
    seen = wait_for(client, job["id"], lambda event: event["event"] == "progress")

    with client.stream("GET", f"/api/v1/downloads/{job['id']}/events") as response:
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-store"
        events = parse_sse(response.iter_lines())
        snapshot = next(event for event in events if "comment" not in event)
        assert snapshot["event"] == "status"
        assert snapshot["data"]["status"] == "running"
        assert snapshot["data"]["progress"]["percent"] > 0
        assert snapshot["data"]["url"] == media.url(name)
        assert int(snapshot["id"]) >= int(seen[-1]["id"])

        gate.set()
        rest = [event for event in events if "comment" not in event]
    assert rest[-1]["event"] == "completed"
    assert all(int(event["id"]) > int(snapshot["id"]) for event in rest)


def test_resume_has_no_gaps_or_duplicates(client: httpx.Client, media: Media) -> None:
    job = create_job(client, media.url("clip.mp4"))
    full = read_events(client, job["id"])
    assert len(full) >= 3

    resumed = read_events(client, job["id"], last_event_id=full[1]["id"])
    assert [event["id"] for event in resumed] == [event["id"] for event in full[2:]]
    assert [event["event"] for event in resumed] == [event["event"] for event in full[2:]]


def test_resume_of_running_job_continues_live(client: httpx.Client, media: Media) -> None:
    name, gate = media.gated_copy()
    job = create_job(client, media.url(name))
    first = wait_for(client, job["id"], lambda event: event["event"] == "progress")

    gate.set()
    rest = read_events(client, job["id"], last_event_id=first[-1]["id"])
    assert rest, "events after the resume point arrive"
    assert int(rest[0]["id"]) > int(first[-1]["id"])
    assert rest[-1]["event"] == "completed"
    assert (
        rest[0]["event"] != "status" or rest[0]["data"]["status"] != "running" or "url" not in rest[0]["data"]
    )


def test_resume_at_terminal_event_is_204(client: httpx.Client, media: Media) -> None:
    job = create_job(client, media.url("clip.mp4"))
    full = read_events(client, job["id"])
    response = client.get(f"/api/v1/downloads/{job['id']}/events", headers={"Last-Event-ID": full[-1]["id"]})
    assert response.status_code == 204


def test_foreign_or_bad_last_event_id_gets_snapshot(client: httpx.Client, media: Media) -> None:
    first = create_job(client, media.url("clip.mp4"))
    first_events = read_events(client, first["id"])
    second = create_job(client, media.url("clip.mp4"))
    read_events(client, second["id"])

    for value in ("not-a-number", "-5", first_events[-1]["id"], "99999999"):
        events = read_events(client, second["id"], last_event_id=value)
        assert len(events) == 1, value
        assert events[0]["event"] == "status"
        assert events[0]["data"]["status"] == "completed"
        assert events[0]["data"]["result"]["sha256"] == media.sha256("clip.mp4")


def test_idle_stream_gets_heartbeats(client: httpx.Client, media: Media) -> None:
    name, gate = media.gated_copy()
    job = create_job(client, media.url(name))
    wait_for(client, job["id"], lambda event: event["event"] == "progress")
    comments = 0
    with client.stream("GET", f"/api/v1/downloads/{job['id']}/events") as response:
        for event in parse_sse(response.iter_lines()):
            if "comment" in event:
                comments += 1
                if comments == 2:
                    break
    gate.set()
    assert comments == 2
    read_events(client, job["id"])
