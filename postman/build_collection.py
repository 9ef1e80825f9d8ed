"""Write the Postman collection (v2.1) and its environments from the definitions below.

    python postman/build_collection.py          # rewrite the JSON files
    python postman/build_collection.py --check  # exit 1 when the JSON files differ from this script

Edit this script, not the JSON: every request gets the shared tests (X-Request-Id, problem details on
errors) added here, so the files stay consistent. Requests that need an API key are skipped when the
`apiKey` variable is empty; admin requests need a key with the `admin` scope.
"""

# The test scripts are JavaScript lines kept whole, and each request joins its blocks of them with `+`.
# ruff: noqa: E501, RUF005

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COLLECTION_PATH = HERE / "nadzu.postman_collection.json"
ENVIRONMENTS = {
    "local": "http://127.0.0.1:8080",
    "dev": "https://dev-api.example.com",
    "prod": "https://api.example.com",
}

# Runs after every response. The health endpoints return their own body, even with 503.
COMMON_TESTS = [
    "pm.test('X-Request-Id is present', function () {",
    "    pm.response.to.have.header('X-Request-Id');",
    "});",
    "if (pm.response.code >= 400 && !pm.request.url.getPath().startsWith('/health')) {",
    "    pm.test('errors are RFC 9457 problem details', function () {",
    "        pm.expect(pm.response.headers.get('Content-Type')).to.include('application/problem+json');",
    "        const problem = pm.response.json();",
    "        pm.expect(problem.type).to.match(/^urn:nadzu:problem:[a-z0-9-]+$/);",
    "        pm.expect(problem).to.include.keys('title', 'status', 'request_id');",
    "        pm.expect(problem.status).to.eql(pm.response.code);",
    "    });",
    "}",
]

SKIP_WITHOUT_KEY = [
    "if (!pm.variables.get('apiKey')) {",
    "    console.log('skipped: set apiKey (NADZU_API_KEY) to run ' + pm.info.requestName);",
    "    pm.execution.skipRequest();",
    "}",
]

JOB_FIELDS = "'id', 'url', 'format', 'status', 'progress', 'attempts', 'events_url', 'created_at'"


def status_test(*codes: int) -> list[str]:
    allowed = ", ".join(str(code) for code in codes)
    return [
        f"pm.test('status is one of [{allowed}]', function () {{",
        f"    pm.expect(pm.response.code).to.be.oneOf([{allowed}]);",
        "});",
    ]


def request(
    name: str,
    method: str,
    path: str,
    tests: list[str],
    *,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    needs_key: bool = False,
    description: str = "",
) -> dict[str, Any]:
    """Build one collection item; `path` may hold `:variable` segments filled from collection variables."""
    segments = [segment for segment in path.split("/") if segment]
    header_list = [{"key": key, "value": value} for key, value in (headers or {}).items()]
    if needs_key:
        header_list.append({"key": "X-API-Key", "value": "{{apiKey}}"})
    if body is not None:
        header_list.append({"key": "Content-Type", "value": "application/json"})

    raw = "{{baseUrl}}" + (path if path != "/" else "/")
    url: dict[str, Any] = {"raw": raw, "host": ["{{baseUrl}}"], "path": segments if segments else [""]}
    if query:
        url["query"] = [{"key": key, "value": value} for key, value in query.items()]
        url["raw"] += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    variables = [segment[1:] for segment in segments if segment.startswith(":")]
    if variables:
        url["variable"] = [{"key": variable, "value": "{{" + variable + "}}"} for variable in variables]

    item: dict[str, Any] = {
        "name": name,
        "request": {"method": method, "header": header_list, "url": url, "description": description},
        "event": [{"listen": "test", "script": {"type": "text/javascript", "exec": tests + COMMON_TESTS}}],
    }
    if body is not None:
        item["request"]["body"] = {"mode": "raw", "raw": json.dumps(body, indent=2)}
    if needs_key:
        item["event"].insert(
            0, {"listen": "prerequest", "script": {"type": "text/javascript", "exec": SKIP_WITHOUT_KEY}}
        )
    return item


def service_folder() -> dict[str, Any]:
    return {
        "name": "Service",
        "item": [
            request(
                "Service index",
                "GET",
                "/",
                status_test(200)
                + [
                    "pm.test('names the service and its API', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body).to.include.keys('name', 'version', 'api', 'docs');",
                    "    pm.expect(body.api).to.eql('/api/v1');",
                    "});",
                ],
            ),
            request(
                "Liveness",
                "GET",
                "/health",
                status_test(200)
                + [
                    "pm.test('status ok', function () {",
                    "    pm.expect(pm.response.json()).to.eql({status: 'ok'});",
                    "});",
                ],
            ),
            request(
                "Readiness",
                "GET",
                "/health/ready",
                status_test(200, 503)
                + [
                    "pm.test('reports every dependency', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body.status).to.be.oneOf(['ok', 'unavailable']);",
                    "    pm.expect(body.checks).to.include.keys('nats', 'redis');",
                    "    Object.values(body.checks).forEach(function (check) {",
                    "        pm.expect(check.status).to.be.oneOf(['ok', 'unavailable']);",
                    "    });",
                    "    pm.expect(body.status === 'ok').to.eql(pm.response.code === 200);",
                    "});",
                ],
            ),
        ],
    }


def auth_folder() -> dict[str, Any]:
    return {
        "name": "Auth",
        "item": [
            request(
                "Session with an invalid captcha token",
                "POST",
                "/api/v1/auth/session",
                status_test(400, 501, 503)
                + [
                    "pm.test('names the failure', function () {",
                    "    const slugs = {400: 'invalid-captcha'};",
                    "    if (slugs[pm.response.code]) {",
                    "        pm.expect(pm.response.json().type).to.eql('urn:nadzu:problem:' + slugs[pm.response.code]);",
                    "    }",
                    "});",
                ],
                body={"captcha_token": "not-a-real-token"},
                description="200 with a real token; 501 while RECAPTCHA_SECRET is unset.",
            ),
            request(
                "Current caller",
                "GET",
                "/api/v1/auth/me",
                status_test(200)
                + [
                    "pm.test('describes the key', function () {",
                    "    pm.expect(pm.response.json()).to.include.keys('tier', 'scopes', 'limits');",
                    "});",
                ],
                needs_key=True,
            ),
            request(
                "Current caller without credentials",
                "GET",
                "/api/v1/auth/me",
                status_test(401)
                + [
                    "pm.test('asks for credentials', function () {",
                    "    pm.response.to.have.header('WWW-Authenticate');",
                    "});",
                ],
            ),
            request(
                "Create API key (admin)",
                "POST",
                "/api/v1/auth/keys",
                status_test(201)
                + [
                    "pm.test('shows the secret once', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body).to.include.keys('key', 'id', 'prefix', 'name', 'scopes', 'tier', 'created_at');",
                    "    pm.collectionVariables.set('key_id', body.id);",
                    "});",
                ],
                body={"name": "postman-{{$timestamp}}", "scopes": ["downloads"]},
                needs_key=True,
            ),
            request(
                "List API keys (admin)",
                "GET",
                "/api/v1/auth/keys",
                status_test(200)
                + [
                    "pm.test('lists keys without secrets', function () {",
                    "    const items = pm.response.json().items;",
                    "    pm.expect(items).to.be.an('array');",
                    "    items.forEach(function (item) { pm.expect(item).to.not.have.property('key'); });",
                    "});",
                ],
                needs_key=True,
            ),
            request(
                "Revoke API key (admin)",
                "DELETE",
                "/api/v1/auth/keys/:key_id",
                status_test(204),
                needs_key=True,
            ),
        ],
    }


def downloads_folder() -> dict[str, Any]:
    job_shape = [
        "pm.test('is a job', function () {",
        "    const job = pm.response.json();",
        f"    pm.expect(job).to.include.keys({JOB_FIELDS});",
        "    pm.expect(job.status).to.be.oneOf(['queued', 'running', 'completed', 'failed', 'cancelled', 'expired']);",
        "});",
    ]
    return {
        "name": "Downloads",
        "item": [
            request(
                "Enqueue a download",
                "POST",
                "/api/v1/downloads",
                status_test(202)
                + job_shape
                + [
                    "pm.test('points at the new job', function () {",
                    "    const job = pm.response.json();",
                    "    pm.expect(pm.response.headers.get('Location')).to.eql('/api/v1/downloads/' + job.id);",
                    "    pm.collectionVariables.set('job_id', job.id);",
                    "});",
                ],
                body={"url": "{{mediaUrl}}", "format": "video"},
                needs_key=True,
            ),
            request(
                "Enqueue a URL that is not http(s)",
                "POST",
                "/api/v1/downloads",
                status_test(422),
                body={"url": "ftp://example.com/video.mp4"},
                needs_key=True,
            ),
            request(
                "List downloads",
                "GET",
                "/api/v1/downloads",
                status_test(200)
                + [
                    "pm.test('is a page of jobs', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body.items).to.be.an('array');",
                    "    pm.expect(body).to.have.property('next_cursor');",
                    "});",
                ],
                query={"limit": "10"},
                needs_key=True,
            ),
            request(
                "Get the download",
                "GET",
                "/api/v1/downloads/:job_id",
                status_test(200) + job_shape,
                needs_key=True,
            ),
            request(
                "Get an unknown download",
                "GET",
                "/api/v1/downloads/:unknown_job_id",
                status_test(404),
                needs_key=True,
            ),
            request(
                "File before completion",
                "GET",
                "/api/v1/downloads/:job_id/file",
                status_test(200, 206, 409, 410),
                needs_key=True,
                description="409 while the job is not completed; 200 with the file once it is.",
            ),
            request(
                "File headers",
                "HEAD",
                "/api/v1/downloads/:job_id/file",
                [
                    "pm.test('status is one of [200, 409, 410]', function () {",
                    "    pm.expect(pm.response.code).to.be.oneOf([200, 409, 410]);",
                    "});",
                ],
                needs_key=True,
            ),
            request(
                "Cancel the download",
                "DELETE",
                "/api/v1/downloads/:job_id",
                status_test(202, 204),
                needs_key=True,
            ),
            request(
                "Events of the cancelled download",
                "GET",
                "/api/v1/downloads/:job_id/events",
                status_test(200, 204)
                + [
                    "if (pm.response.code === 200) {",
                    "    pm.test('is an event stream that ends with the job', function () {",
                    "        pm.expect(pm.response.headers.get('Content-Type')).to.include('text/event-stream');",
                    "        pm.expect(pm.response.text()).to.match(/^id: /m);",
                    "        pm.expect(pm.response.text()).to.match(/^event: (status|cancelled|failed|completed)$/m);",
                    "    });",
                    "}",
                ],
                headers={"Accept": "text/event-stream"},
                needs_key=True,
                description="The job is terminal once cancelled, so the stream ends after its events.",
            ),
            request(
                "Supported sites",
                "GET",
                "/api/v1/supported-sites",
                status_test(200, 503)
                + [
                    "if (pm.response.code === 200) {",
                    "    pm.test('lists extractors', function () {",
                    "        const body = pm.response.json();",
                    "        pm.expect(body.count).to.eql(body.items.length);",
                    "        body.items.forEach(function (item) { pm.expect(item).to.have.property('name'); });",
                    "    });",
                    "} else {",
                    "    pm.test('says when to retry', function () { pm.response.to.have.header('Retry-After'); });",
                    "}",
                ],
                query={"q": "youtube"},
                description="The list comes from the downloader's yt-dlp: 503 with Retry-After while no downloader runs.",
            ),
        ],
    }


def contributions_folder() -> dict[str, Any]:
    calendar_shape = [
        "if (pm.response.code === 200) {",
        "    pm.test('is a contribution calendar', function () {",
        "        const body = pm.response.json();",
        "        pm.expect(body).to.include.keys('username', 'from', 'to', 'total', 'days', 'years', 'streaks', 'fetched_at', 'cached');",
        "        body.days.forEach(function (day) { pm.expect(day.level).to.be.within(0, 4); });",
        "    });",
        "}",
        "if (pm.response.code === 503) {",
        "    pm.test('says when to retry', function () { pm.response.to.have.header('Retry-After'); });",
        "}",
    ]
    return {
        "name": "Contributions",
        "item": [
            request(
                "Contributions of the default user",
                "GET",
                "/api/v1/contributions",
                status_test(200, 404, 503) + calendar_shape,
                description="404 default-user-not-configured while GITHUB_DEFAULT_USER is unset.",
            ),
            request(
                "Contributions of a user",
                "GET",
                "/api/v1/contributions/:username",
                status_test(200, 404, 503) + calendar_shape,
                query={"year": "2025"},
            ),
        ],
    }


def build_collection() -> dict[str, Any]:
    return {
        "info": {
            "name": "Nadzu API",
            "description": "The public HTTP API of the Nadzu gateway. Generated by postman/build_collection.py.",
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
        },
        "variable": [
            {"key": "mediaUrl", "value": "https://example.com/video.mp4"},
            {"key": "job_id", "value": ""},
            {"key": "key_id", "value": "00000000-0000-7000-8000-000000000000"},
            {"key": "unknown_job_id", "value": "00000000-0000-7000-8000-000000000000"},
            {"key": "username", "value": "octocat"},
        ],
        "item": [service_folder(), auth_folder(), downloads_folder(), contributions_folder()],
    }


def build_environment(name: str, base_url: str) -> dict[str, Any]:
    return {
        "name": f"Nadzu {name}",
        "values": [
            {"key": "baseUrl", "value": base_url, "type": "default", "enabled": True},
            {"key": "apiKey", "value": "", "type": "secret", "enabled": True},
        ],
        "_postman_variable_scope": "environment",
    }


def rendered_files() -> dict[Path, str]:
    files = {COLLECTION_PATH: json.dumps(build_collection(), indent=2, ensure_ascii=False) + "\n"}
    for name, base_url in ENVIRONMENTS.items():
        path = HERE / "environments" / f"{name}.postman_environment.json"
        files[path] = json.dumps(build_environment(name, base_url), indent=2) + "\n"
    return files


def main(argv: list[str]) -> int:
    files = rendered_files()
    if argv == ["--check"]:
        stale = [
            str(path.relative_to(HERE.parent))
            for path, text in files.items()
            if not path.exists() or path.read_text() != text
        ]
        if stale:
            print(f"out of date, run python postman/build_collection.py: {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0

    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
