"""A local HTTP server that behaves like GitHub's GraphQL endpoint for contribution calendars.

It checks the bearer token and the query's variables, rejects windows longer than one year with GitHub's
validation error, returns `NOT_FOUND` for unknown logins, and can be set to rate-limit, fail or stall.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ONE_YEAR_MESSAGE = "The total time spanned by 'from' and 'to' must not exceed 1 year"
_LEVEL_NAMES = ("NONE", "FIRST_QUARTILE", "SECOND_QUARTILE", "THIRD_QUARTILE", "FOURTH_QUARTILE")


@dataclass
class FakeUser:
    login: str
    counts: dict[date, int] = field(default_factory=dict)


@dataclass
class Call:
    login: str
    first: date
    last: date


def _parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _one_year_after(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:
        return moment.replace(year=moment.year + 1, day=28)


def _levels(counts: list[int]) -> list[int]:
    """GitHub-like quartiles of the non-zero counts of one window."""
    active = sorted(count for count in counts if count > 0)
    if not active:
        return [0] * len(counts)
    cuts = [active[(len(active) * q) // 4] for q in (1, 2, 3)]
    levels = []
    for count in counts:
        if count == 0:
            levels.append(0)
        else:
            levels.append(1 + sum(count > cut for cut in cuts))
    return levels


class FakeGitHub:
    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.users: dict[str, FakeUser] = {}
        self.calls: list[Call] = []
        self.violations: list[str] = []
        # Windows (login in lower case, year of `from`) that get a primary rate limit error.
        self.rate_limited_windows: set[tuple[str, int]] = set()
        # Status codes (with headers) for the next requests, one each, before normal responses resume.
        self.scripted_failures: list[tuple[int, dict[str, str]]] = []
        # While cleared, responses wait (up to `stall_seconds`) before they are sent.
        self.gate = threading.Event()
        self.gate.set()
        self.stall_seconds = 5.0
        # Delay of every calendar answer, seconds; the benchmark sets it to mimic GitHub's latency.
        self.latency_seconds = 0.0
        self.active = 0
        self.max_active = 0
        self._condition = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/graphql"

    def start(self) -> FakeGitHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()

    def add_user(self, login: str, counts: dict[date, int] | None = None) -> FakeUser:
        user = FakeUser(login=login, counts=dict(counts or {}))
        self.users[login.lower()] = user
        return user

    def wait_for_calls(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least `count` calls arrived; meant for `asyncio.to_thread`."""
        with self._condition:
            return self._condition.wait_for(lambda: len(self.calls) >= count, timeout)

    # Request handling, run in the server's threads.

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status, headers, payload = fake._answer(self.headers.get("Authorization"), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    def _answer(self, authorization: str | None, body: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        if authorization != f"Bearer {self.token}":
            return (
                401,
                {},
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/graphql"},
            )

        try:
            request = json.loads(body)
            query = request["query"]
            variables = request["variables"]
        except (ValueError, KeyError, TypeError):
            return 400, {}, {"message": "Problems parsing JSON"}
        if "contributionCalendar" not in query or "contributionYears" not in query:
            self.violations.append(f"unexpected query: {query[:80]}")
            return 200, {}, {"errors": [{"message": "unexpected query"}]}

        login = variables.get("login")
        start = _parse_datetime(variables.get("from"))
        end = _parse_datetime(variables.get("to"))
        if not isinstance(login, str) or start is None or end is None:
            self.violations.append(f"invalid variables: {variables}")
            return (
                200,
                {},
                {"errors": [{"message": f"Variable $from of type DateTime! was invalid: {variables}"}]},
            )

        with self._condition:
            self.calls.append(Call(login=login, first=start.date(), last=end.date()))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self._condition.notify_all()
        try:
            self.gate.wait(self.stall_seconds)
            if self.latency_seconds:
                time.sleep(self.latency_seconds)
            return self._calendar_answer(login, start, end)
        finally:
            with self._condition:
                self.active -= 1

    def _calendar_answer(self, login: str, start: datetime, end: datetime) -> tuple[int, dict[str, str], Any]:
        with self._condition:
            scripted = self.scripted_failures.pop(0) if self.scripted_failures else None
        if scripted is not None:
            status, headers = scripted
            return status, headers, {"message": f"scripted failure {status}"}

        if end > _one_year_after(start) or end < start:
            self.violations.append(f"window over one year: {start} .. {end}")
            error = {"path": ["user", "contributionsCollection"], "message": ONE_YEAR_MESSAGE}
            return 200, {}, {"data": {"user": None}, "errors": [error]}

        if (login.lower(), start.year) in self.rate_limited_windows:
            reset = str(int(time.time()) + 120)
            headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
            error = {"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}
            return 200, headers, {"errors": [error]}

        user = self.users.get(login.lower())
        if user is None:
            error = {
                "type": "NOT_FOUND",
                "path": ["user"],
                "locations": [{"line": 2, "column": 3}],
                "message": f"Could not resolve to a User with the login of '{login}'.",
            }
            return 200, {}, {"data": {"user": None}, "errors": [error]}

        dates = []
        day = start.date()
        while day <= end.date():
            dates.append(day)
            day += timedelta(days=1)
        counts = [user.counts.get(day, 0) for day in dates]
        levels = _levels(counts)

        weeks: list[dict[str, Any]] = []
        for day, count, level in zip(dates, counts, levels, strict=True):
            if not weeks or day.weekday() == 6:
                weeks.append({"contributionDays": []})
            weeks[-1]["contributionDays"].append(
                {
                    "date": day.isoformat(),
                    "contributionCount": count,
                    "contributionLevel": _LEVEL_NAMES[level],
                    "color": "#ebedf0",
                    "weekday": (day.weekday() + 1) % 7,
                }
            )
        years = sorted({day.year for day, count in user.counts.items() if count > 0}, reverse=True)
        collection = {
            "contributionYears": years,
            "contributionCalendar": {"totalContributions": sum(counts), "weeks": weeks},
        }
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999"}
        return 200, headers, {"data": {"user": {"login": user.login, "contributionsCollection": collection}}}
