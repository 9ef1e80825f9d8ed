"""Start the whole stack on free loopback ports, check it live directly and through Caddy, stop it again.

    .venv/bin/python infra/ci/live_stack.py CADDY_BINARY

Run it with the workspace's Python: it imports the services' shared package and the local stand-ins of
the test suite. infra/ci/live-stack.sh is the entry point that CI calls.

Everything it starts listens on 127.0.0.1. A nats-server runs JetStream on a temporary store. The four
services use a scratch PostgreSQL database and Redis keys under a prefix of their own. A media server
serves an ffmpeg-made clip, the test suite's stand-ins replace reCAPTCHA siteverify and GitHub GraphQL,
and Caddy runs infra/caddy/Caddyfile.local in front of the gateway. The checks, one output line each:

- stack-ready: every service is up and `GET /health/ready` returns 200.
- newman-direct: the Postman collection passes against the gateway, with the admin key.
- caddy-https: the collection passes again through Caddy over HTTPS, trusting Caddy's local CA.
- caddy-sse-unbuffered: the first event of a running download arrives through Caddy while the media
  server still pauses the transfer, uncompressed, and the stream ends with `completed`.
- caddy-admin-allow-list: the downloads browser rejects 127.0.0.3 (403), asks the allowed 127.0.0.2
  for a password (401) and lists the downloaded file with it.
- caddy-client-address: the gateway counts anonymous requests per client address behind Caddy, and
  ignores a forged `X-Forwarded-For` both through Caddy and from an untrusted direct peer. It logs a
  rejected key with the client's own address.
- stack-stop: every process started here exits on SIGTERM within its grace period.

PostgreSQL and Redis must already answer (NADZU_LIVE_POSTGRES, default postgresql://postgres@127.0.0.1:5432;
NADZU_LIVE_REDIS, default redis://127.0.0.1:6379/12). Exits 1 when any check fails.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from nadzu_common.testing.media import MediaServer, make_video  # noqa: E402
from tests.auth.fake_recaptcha import FakeRecaptcha, FakeRecaptchaServer  # noqa: E402
from tests.contributions.fake_github import FakeGitHub  # noqa: E402

POSTGRES_URL = os.environ.get("NADZU_LIVE_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("NADZU_LIVE_REDIS", "redis://127.0.0.1:6379/12")
SERVICES = ("auth", "downloader", "contributions", "gateway")
# Seconds a service gets to stop after SIGTERM: above the services' own drain timeouts (10 s by default).
STOP_GRACE_SECONDS = 20.0
GITHUB_TOKEN = "live-stack-token"  # noqa: S105 - accepted only by the local GitHub stand-in
ANONYMOUS_QUOTA = 1000
# The admin file browser's allowed address and an address outside the allow-list; Linux routes all of
# 127.0.0.0/8 on the loopback interface, so both work as source addresses without set-up.
ALLOWED_SOURCE = "127.0.0.2"
OUTSIDE_SOURCE = "127.0.0.3"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, description: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {description}")


class CheckFailed(Exception):
    """A live check found the stack behaving differently from what it promises."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Process:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """Everything this script starts, with the settings the checks need."""

    scratch: Path
    admin_key: str = field(default_factory=lambda: "nadzu_live_" + secrets.token_urlsafe(32))
    admin_key_id: str | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    processes: list[Process] = field(default_factory=list)
    database: str | None = None
    nats_port: int = 0
    gateway_port: int = 0
    caddy_port: int = 0
    ca_file: Path | None = None
    media: MediaServer | None = None
    recaptcha: FakeRecaptcha | None = None
    recaptcha_server: FakeRecaptchaServer | None = None
    github: FakeGitHub | None = None

    @property
    def downloads_dir(self) -> Path:
        return self.scratch / "downloads"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def redis_prefixes(self) -> list[str]:
        prefixes = [f"nadzu:live:{self.run_id}:rl:", f"nadzu:live:{self.run_id}:contributions:"]
        if self.admin_key_id is not None:
            # The gateway keeps Idempotency-Key records under a fixed prefix and the caller's key id.
            prefixes.append(f"nadzu:idempotency:{self.admin_key_id}:")
        return prefixes

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> Process:
        log_path = self.scratch / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.scratch
            )
        started = Process(name, process, log_path)
        self.processes.append(started)
        return started

    def dead_processes(self) -> list[Process]:
        return [process for process in self.processes if not process.alive()]


def create_database() -> str:
    name = f"nadzu_live_{uuid.uuid4().hex[:12]}"
    subprocess.run(
        ["psql", f"{POSTGRES_URL}/postgres", "-q", "-c", f'CREATE DATABASE "{name}"'],
        check=True,
        capture_output=True,
    )
    return name


def drop_database(name: str) -> None:
    subprocess.run(
        ["psql", f"{POSTGRES_URL}/postgres", "-q", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        check=False,
        capture_output=True,
    )


def delete_redis_keys(prefixes: list[str]) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for prefix in prefixes:
            for key in client.scan_iter(match=prefix + "*", count=500):
                client.delete(key)
    finally:
        client.close()


def start_stand_ins(stack: Stack) -> None:
    media_root = stack.scratch / "media"
    # About 1.5 MB: the media server pauses a gated transfer after its first 128 KiB, so the clip must
    # be larger than that for the SSE check to catch the job while it runs.
    make_video(media_root / "clip.mp4", seconds=4, size="640x360", bitrate="2M", noise=True, title="live")
    stack.media = MediaServer(media_root).start()
    stack.media.gates["/clip.mp4"] = threading.Event()
    shutil.copy(media_root / "clip.mp4", media_root / "open.mp4")

    stack.recaptcha = FakeRecaptcha(secret=secrets.token_urlsafe(24))
    stack.recaptcha_server = FakeRecaptchaServer(stack.recaptcha).__enter__()

    stack.github = FakeGitHub(token=GITHUB_TOKEN)
    today = datetime.now(UTC).date()
    stack.github.add_user("octocat", {today - timedelta(days=offset): offset % 5 for offset in range(400)})
    stack.github.start()


def service_environment(stack: Stack, recaptcha_url: str, github_url: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("NADZU_", "OTEL_"))}
    environment.pop("CI", None)
    environment.update(
        {
            "NATS_URL": f"nats://127.0.0.1:{stack.nats_port}",
            "DATABASE_URL": f"{POSTGRES_URL}/{stack.database}",
            "REDIS_URL": REDIS_URL,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(stack.gateway_port),
            "DOWNLOADS_DIR": str(stack.downloads_dir),
            "DOWNLOADER_ALLOW_PRIVATE_URLS": "true",
            "SESSION_SECRET": secrets.token_urlsafe(48),
            "ADMIN_API_KEY": stack.admin_key,
            # Caddy reaches the gateway from 127.0.0.1; no other peer's X-Forwarded-For is believed.
            "TRUSTED_PROXIES": "127.0.0.1/32",
            "RATE_LIMIT_ANONYMOUS": f"{ANONYMOUS_QUOTA}/minute",
            "RATE_LIMIT_AUTH_FAILURES": "100/minute",
            "RATE_LIMIT_SESSIONS_ISSUED": "100/minute",
            "RATE_LIMIT_KEY_PREFIX": stack.redis_prefixes[0],
            "CONTRIBUTIONS_KEY_PREFIX": stack.redis_prefixes[1],
            "RECAPTCHA_SECRET": stack.recaptcha.secret if stack.recaptcha else "",
            "RECAPTCHA_VERIFY_URL": recaptcha_url,
            "GITHUB_TOKEN": GITHUB_TOKEN,
            "GITHUB_GRAPHQL_URL": github_url,
            "GITHUB_DEFAULT_USER": "octocat",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            # The client address check reads the gateway's log while it runs.
            "PYTHONUNBUFFERED": "1",
        }
    )
    return environment


def start_stack(stack: Stack) -> None:
    stack.downloads_dir.mkdir()
    stack.database = create_database()
    start_stand_ins(stack)

    stack.nats_port = free_port()
    store = stack.scratch / "nats"
    command = [str(BIN / "nats-server"), "-js", "-a", "127.0.0.1", "-p", str(stack.nats_port)]
    nats = stack.spawn("nats", [*command, "-sd", str(store)], dict(os.environ))
    wait_for(lambda: port_open(stack.nats_port) or not nats.alive(), 15, "nats-server listening")

    stack.gateway_port = free_port()
    assert stack.recaptcha_server is not None and stack.github is not None
    environment = service_environment(stack, stack.recaptcha_server.verify_url, stack.github.url)
    for service in SERVICES:
        own = dict(environment)
        # One metrics port per service, so nothing collides with another stack on this machine.
        own["METRICS_PORT"] = str(free_port()) if service != "gateway" else ""
        stack.spawn(service, [str(BIN / f"nadzu-{service}")], own)

    def ready() -> bool:
        if stack.dead_processes():
            return True
        try:
            status, _, _ = http_request(stack.gateway_url, "GET", "/health/ready")
        except OSError:
            return False
        return status == 200

    wait_for(ready, 90, "GET /health/ready returning 200")
    dead = [f"{process.name} exited with {process.process.returncode}" for process in stack.dead_processes()]
    expect(not dead, ", ".join(dead))

    admin = {"X-API-Key": stack.admin_key}
    status, _, body = http_request(stack.gateway_url, "GET", "/api/v1/auth/me", admin)
    expect(status == 200, f"the admin key is not accepted: GET /api/v1/auth/me returned {status}")
    stack.admin_key_id = json.loads(body)["key_id"]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_request(
    base_url: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    source: str = "127.0.0.1",
    context: ssl.SSLContext | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send one request from `source` and return the status, headers and body."""
    scheme, _, rest = base_url.partition("://")
    host, _, port = rest.partition(":")
    connection: http.client.HTTPConnection
    if scheme == "https":
        connection = http.client.HTTPSConnection(
            host, int(port), context=context, timeout=20, source_address=(source, 0)
        )
    else:
        connection = http.client.HTTPConnection(host, int(port), timeout=20, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


NEWMAN_COUNT = re.compile(r"(requests|assertions)\s*│\s*(\d+)\s*│\s*(\d+)")


def run_newman(stack: Stack, base_url: str, ca_file: Path | None, run_name: str) -> str:
    """Run the collection with infra/ci/newman.sh and return its request and assertion counts.

    Every request must run: a request skipped for a missing variable fails the check, because this stack
    provides all of them. The media URL carries the run's name.
    """
    assert stack.media is not None and stack.recaptcha is not None
    environment = dict(os.environ)
    environment.update(
        {
            "NADZU_API_KEY": stack.admin_key,
            # A query string per run, so the second run downloads again instead of reusing the first file.
            "NADZU_MEDIA_URL": f"{stack.media.url('open.mp4')}?run={run_name}",
            "NADZU_CAPTCHA_TOKEN": stack.recaptcha.issue_v2(hostname="localhost"),
        }
    )
    if ca_file is not None:
        environment["NADZU_CA_FILE"] = str(ca_file)
    log_path = stack.scratch / f"newman-{run_name}.log"
    with log_path.open("wb") as log:
        result = subprocess.run(
            ["bash", str(ROOT / "infra/ci/newman.sh"), base_url, "local"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=150,
        )
    output = log_path.read_text(errors="replace")
    if result.returncode != 0:
        raise CheckFailed(f"newman exited {result.returncode}:\n" + "\n".join(output.splitlines()[-60:]))
    skipped = sorted(set(re.findall(r"skipped: set \w+ \([^)]*\) to run [^'\n]+", output)))
    expect(not skipped, "requests were skipped:\n" + "\n".join(skipped))
    counts = {name: int(executed) for name, executed, _ in NEWMAN_COUNT.findall(output)}
    return f"{counts.get('requests', 0)} requests, {counts.get('assertions', 0)} assertions"


def start_caddy(stack: Stack, caddy_binary: str) -> None:
    home = stack.scratch / "caddy"
    stack.caddy_port = free_port()
    environment = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "CADDY_ADMIN": "off",
        "CADDY_BIND": "127.0.0.1",
        "CADDY_HTTP_PORT": str(free_port()),
        "CADDY_HTTPS_PORT": str(stack.caddy_port),
        "GATEWAY_UPSTREAM": f"127.0.0.1:{stack.gateway_port}",
        "ADMIN_ALLOW_CIDRS": f"{ALLOWED_SOURCE}/32",
        "DOWNLOADS_ROOT": str(stack.downloads_dir),
    }
    caddyfile = ROOT / "infra/caddy/Caddyfile.local"
    caddy = stack.spawn(
        "caddy", [caddy_binary, "run", "--config", str(caddyfile), "--adapter", "caddyfile"], environment
    )
    ca_file = home / "data/caddy/pki/authorities/local/root.crt"
    stack.ca_file = ca_file
    wait_for(
        lambda: not caddy.alive() or (port_open(stack.caddy_port) and ca_file.exists()),
        20,
        "Caddy serving HTTPS",
    )
    expect(caddy.alive(), f"caddy exited with {caddy.process.returncode}:\n{caddy.log_tail()}")


def tls_context(stack: Stack) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(stack.ca_file))


def caddy_url(stack: Stack) -> str:
    return f"https://localhost:{stack.caddy_port}"


def check_sse_unbuffered(stack: Stack) -> None:
    """Follow a download through Caddy while the media server pauses its transfer."""
    assert stack.media is not None
    gate = stack.media.gates["/clip.mp4"]
    key = {"X-API-Key": stack.admin_key, "Content-Type": "application/json"}
    body = json.dumps({"url": stack.media.url("clip.mp4"), "format": "video"}).encode()
    status, _, payload = http_request(stack.gateway_url, "POST", "/api/v1/downloads", key, body)
    expect(status == 202, f"enqueue returned {status}: {payload[:300]!r}")
    job_id = json.loads(payload)["id"]

    def running() -> bool:
        _, _, job = http_request(stack.gateway_url, "GET", f"/api/v1/downloads/{job_id}", key)
        return bool(json.loads(job)["status"] == "running")

    wait_for(running, 30, f"job {job_id} running")

    connection = http.client.HTTPSConnection(
        "localhost", stack.caddy_port, context=tls_context(stack), timeout=20
    )
    try:
        connection.request(
            "GET",
            f"/api/v1/downloads/{job_id}/events",
            headers={"X-API-Key": stack.admin_key, "Accept-Encoding": "gzip, zstd"},
        )
        response = connection.getresponse()
        expect(response.status == 200, f"events returned {response.status}")
        content_type = response.getheader("Content-Type") or ""
        expect(content_type.startswith("text/event-stream"), f"events Content-Type {content_type!r}")
        encoding = response.getheader("Content-Encoding")
        expect(encoding is None, f"Caddy compressed the event stream with {encoding}")

        try:
            first_event = read_event(response)
        except TimeoutError:
            raise CheckFailed("no event arrived through Caddy within 20 s: the stream is buffered") from None
        expect(not gate.is_set(), "the gate opened before the first event arrived")
        expect(first_event.get("event") == "status", f"first event {first_event}")
        data = json.loads(first_event.get("data", "{}"))
        expect(data.get("status") == "running", f"first event is not the running snapshot: {data}")

        gate.set()
        names = []
        while True:
            event = read_event(response)
            if not event:
                break
            names.append(event.get("event"))
        expect(names[-1:] == ["completed"], f"the stream ended with {names[-3:]}, not completed")
    finally:
        gate.set()
        connection.close()


def read_event(response: http.client.HTTPResponse) -> dict[str, str]:
    """Read one server-sent event, skipping comments; an empty dict at the end of the stream."""
    event: dict[str, str] = {}
    while True:
        line = response.readline()
        if not line:
            return event
        text = line.decode().rstrip("\r\n")
        if not text:
            if event:
                return event
            continue
        if text.startswith(":"):
            continue
        name, _, value = text.partition(":")
        event[name] = value.removeprefix(" ")


def check_admin_allow_list(stack: Stack) -> None:
    import base64

    context = tls_context(stack)
    url = caddy_url(stack)
    status, _, _ = http_request(url, "GET", "/admin/files/", source=OUTSIDE_SOURCE, context=context)
    expect(status == 403, f"/admin/files/ from {OUTSIDE_SOURCE}: status {status}, expected 403")
    status, _, _ = http_request(url, "GET", "/admin/files/", source=ALLOWED_SOURCE, context=context)
    expect(status == 401, f"/admin/files/ from {ALLOWED_SOURCE} without password: {status}, expected 401")

    credentials = base64.b64encode(b"admin:admin").decode()
    status, _, listing = http_request(
        url,
        "GET",
        "/admin/files/",
        headers={"Authorization": f"Basic {credentials}"},
        source=ALLOWED_SOURCE,
        context=context,
    )
    expect(status == 200, f"/admin/files/ from {ALLOWED_SOURCE} with password: {status}, expected 200")
    entries = [path.name for path in stack.downloads_dir.iterdir()]
    expect(bool(entries), "the downloads directory is empty, so the listing proves nothing")
    missing = [name for name in entries if name.encode() not in listing]
    expect(not missing, f"the listing lacks {missing}")


RATE_LIMIT_FIELD = re.compile(r'"anonymous";r=(\d+)')


def anonymous_remaining(headers: http.client.HTTPMessage) -> int:
    value = headers.get("RateLimit") or ""
    match = RATE_LIMIT_FIELD.search(value)
    expect(match is not None, f"no anonymous RateLimit field in {value!r}")
    assert match is not None
    return int(match.group(1))


def check_client_address(stack: Stack) -> None:
    """Read the anonymous per-address budget, which the gateway keys by the client address it resolved.

    Through Caddy, 127.0.0.2 and 127.0.0.3 must each get a budget of their own, separate from Caddy's
    127.0.0.1 (which the newman runs used), and a forged X-Forwarded-For must not move a request into
    another budget. Sent straight to the gateway from 127.0.0.2, an untrusted peer, the forged header is
    ignored too and the request counts against 127.0.0.2.
    """
    context = tls_context(stack)
    url = caddy_url(stack)

    def remaining(source: str, forged: str | None = None, direct: bool = False) -> int:
        headers = {"X-Forwarded-For": forged} if forged else {}
        base = stack.gateway_url if direct else url
        status, response_headers, _ = http_request(
            base, "GET", "/", headers=headers, source=source, context=None if direct else context
        )
        expect(status == 200, f"GET / from {source}: status {status}")
        return anonymous_remaining(response_headers)

    first = remaining(ALLOWED_SOURCE)
    second = remaining(ALLOWED_SOURCE)
    expect(second == first - 1, f"two requests from {ALLOWED_SOURCE} left {first} then {second}")
    expect(first == ANONYMOUS_QUOTA - 1, f"{ALLOWED_SOURCE} shares a budget: {first} left after one request")

    other = remaining(OUTSIDE_SOURCE, forged="203.0.113.9")
    expect(
        other == ANONYMOUS_QUOTA - 1,
        f"{OUTSIDE_SOURCE} through Caddy has {other} left, not a fresh budget of its own",
    )
    again = remaining(OUTSIDE_SOURCE, forged="198.51.100.4")
    expect(
        again == other - 1,
        f"a forged X-Forwarded-For moved {OUTSIDE_SOURCE} into another budget ({other} then {again})",
    )

    direct = remaining(ALLOWED_SOURCE, forged="203.0.113.10", direct=True)
    expect(
        direct == second - 1,
        f"the gateway believed X-Forwarded-For from the untrusted peer {ALLOWED_SOURCE} "
        f"({direct} left, expected {second - 1})",
    )

    # The gateway logs the client address of a rejected key; find that line by the request id.
    status, headers, _ = http_request(
        url,
        "GET",
        "/api/v1/auth/me",
        {"X-API-Key": "nadzu_live_unknown_" + "0" * 32, "X-Forwarded-For": "203.0.113.11"},
        source=OUTSIDE_SOURCE,
        context=context,
    )
    expect(status == 401, f"an unknown key through Caddy got {status}, expected 401")
    request_id = headers.get("X-Request-Id")
    gateway = next(process for process in stack.processes if process.name == "gateway")
    logged: list[dict[str, Any]] = []

    def rejection_logged() -> bool:
        for line in gateway.log_path.read_text(errors="replace").splitlines():
            if request_id and request_id in line and '"auth.rejected"' in line:
                logged.append(json.loads(line))
                return True
        return False

    wait_for(rejection_logged, 5, f"the gateway's auth.rejected log line of request {request_id}")
    client = logged[0].get("client")
    expect(client == OUTSIDE_SOURCE, f"the gateway logged the client as {client!r}, not {OUTSIDE_SOURCE}")


def stop_stack(stack: Stack) -> None:
    """Send SIGTERM to every process, newest first; fail when one needs SIGKILL or a service fails to stop.

    A service stopped cleanly when it exits 0, or by SIGTERM itself after its shutdown (uvicorn raises the
    signal again once the gateway has shut down, so that its exit status names the signal).
    """
    problems = []
    for process in reversed(stack.processes):
        if process.alive():
            process.process.send_signal(signal.SIGTERM)
            try:
                process.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.process.kill()
                process.process.wait()
                problems.append(f"{process.name} needed SIGKILL after {STOP_GRACE_SECONDS:g} s")
                continue
        code = process.process.returncode
        if process.name in SERVICES and code not in (0, -signal.SIGTERM):
            problems.append(f"{process.name} exited with {code}:\n{process.log_tail(10)}")
    expect(not problems, "\n".join(problems))


def release_resources(stack: Stack) -> None:
    for process in stack.processes:
        if process.alive():
            process.process.kill()
            process.process.wait()
    if stack.media is not None:
        stack.media.stop()
    if stack.recaptcha_server is not None:
        stack.recaptcha_server.__exit__(None, None, None)
    if stack.github is not None:
        stack.github.stop()
    if stack.database is not None:
        drop_database(stack.database)
    try:
        delete_redis_keys(stack.redis_prefixes)
    except OSError as error:
        print(f"      could not delete this run's Redis keys: {error}", flush=True)


class Runner:
    """Run named checks in order, print one line each, and skip the rest once the stack is broken."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.failures = 0
        self.broken = False

    def check(self, name: str, action: Callable[[], str | None], needs_stack: bool = True) -> bool:
        if needs_stack and self.broken:
            print(f"skip  {name:<34} (an earlier check failed to start the stack)", flush=True)
            self.failures += 1
            return False
        started = time.monotonic()
        try:
            note = action()
        except Exception as error:
            elapsed = time.monotonic() - started
            print(f"FAIL  {name:<34} {elapsed:3.0f}s", flush=True)
            detail = str(error) if isinstance(error, CheckFailed | TimeoutError) else traceback.format_exc()
            print("\n".join("      " + line for line in detail.splitlines()), flush=True)
            self.failures += 1
            return False
        suffix = f"  ({note})" if note else ""
        print(f"ok    {name:<34} {time.monotonic() - started:3.0f}s{suffix}", flush=True)
        return True

    def print_service_logs(self) -> None:
        for process in self.stack.processes:
            print(f"      --- {process.name} (last lines of {process.log_path.name})", flush=True)
            print("\n".join("      " + line for line in process.log_tail().splitlines()), flush=True)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    caddy_binary = sys.argv[1]

    # SIGTERM (the shell script's trap) unwinds through the finally below like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))

    scratch = Path(tempfile.mkdtemp(prefix="nadzu-live-"))
    stack = Stack(scratch)
    runner = Runner(stack)
    try:
        if not runner.check("stack-ready", lambda: start_stack(stack), needs_stack=False):
            runner.print_service_logs()
            runner.broken = True
        runner.check("newman-direct", lambda: run_newman(stack, stack.gateway_url, None, "direct"))
        if not runner.check("caddy-start", lambda: start_caddy(stack, caddy_binary)):
            runner.broken = True
        runner.check("caddy-https", lambda: run_newman(stack, caddy_url(stack), stack.ca_file, "caddy"))
        runner.check("caddy-sse-unbuffered", lambda: check_sse_unbuffered(stack))
        runner.check("caddy-admin-allow-list", lambda: check_admin_allow_list(stack))
        runner.check("caddy-client-address", lambda: check_client_address(stack))
        crashed = [process for process in stack.dead_processes() if process.name != "nats"]
        if crashed:
            runner.print_service_logs()
        runner.check("stack-stop", lambda: stop_stack(stack), needs_stack=False)
    finally:
        release_resources(stack)
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if runner.failures else 0


if __name__ == "__main__":
    sys.exit(main())
