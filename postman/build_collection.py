"""Write the Postman collection (v2.1) and its environments from the definitions below.

    python postman/build_collection.py          # rewrite the JSON files
    python postman/build_collection.py --check  # exit 1 when the JSON files differ from this script

Edit this script, not the JSON: every request gets the shared tests (X-Request-Id, problem details on
errors) added here, so the files stay consistent. Requests that need an API key are skipped when the
`apiKey` variable is empty; admin requests need a key with the `admin` scope. The session requests are
skipped unless `captchaToken` contains an unused reCAPTCHA token. The download requests enqueue `mediaUrl`
and expect it to complete, so point it at media that the downloader can fetch.
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

# Runs after every response. The health endpoints return their own body, even with 503; a HEAD response
# has no body to check.
COMMON_TESTS = [
    "pm.test('X-Request-Id is present', function () {",
    "    pm.response.to.have.header('X-Request-Id');",
    "});",
    "if (pm.response.code >= 400 && pm.request.method !== 'HEAD' && !pm.request.url.getPath().startsWith('/health')) {",
    "    pm.test('errors are RFC 9457 problem details', function () {",
    "        pm.expect(pm.response.headers.get('Content-Type')).to.include('application/problem+json');",
    "        const problem = pm.response.json();",
    "        pm.expect(problem.type).to.match(/^urn:nadzu:problem:[a-z0-9-]+$/);",
    "        pm.expect(problem).to.include.keys('title', 'status', 'request_id');",
    "        pm.expect(problem.status).to.eql(pm.response.code);",
    "    });",
    "}",
]

JOB_FIELDS = (
    "'id', 'url', 'format', 'status', 'progress', 'result', 'error', 'attempts', 'events_url', "
    "'created_at', 'started_at', 'finished_at', 'expires_at'"
)
RESULT_FIELDS = "'filename', 'size', 'content_type', 'sha256', 'title', 'duration', 'file_url'"
KEY_FIELDS = "'id', 'prefix', 'name', 'scopes', 'tier', 'created_at', 'expires_at'"
CALENDAR_FIELDS = "'username', 'from', 'to', 'total', 'days', 'years', 'streaks', 'fetched_at', 'cached'"


def skip_without(variable: str, source: str) -> list[str]:
    """Build a pre-request script that skips the request while `variable` is empty."""
    return [
        f"if (!pm.variables.get('{variable}')) {{",
        f"    console.log('skipped: set {variable} ({source}) to run ' + pm.info.requestName);",
        "    pm.execution.skipRequest();",
        "}",
    ]


# The header each credential variable is sent in, and where the variable's value comes from.
CREDENTIALS = {
    "apiKey": ("X-API-Key", "{{apiKey}}", "NADZU_API_KEY"),
    "userKey": ("X-API-Key", "{{userKey}}", "the key made by Create API key"),
    "sessionToken": ("Authorization", "Bearer {{sessionToken}}", "NADZU_CAPTCHA_TOKEN"),
}


def status_test(*codes: int) -> list[str]:
    allowed = ", ".join(str(code) for code in codes)
    return [
        f"pm.test('status is one of [{allowed}]', function () {{",
        f"    pm.expect(pm.response.code).to.be.oneOf([{allowed}]);",
        "});",
    ]


def problem_test(slug: str) -> list[str]:
    return [
        f"pm.test('problem type is {slug}', function () {{",
        f"    pm.expect(pm.response.json().type).to.eql('urn:nadzu:problem:{slug}');",
        "});",
    ]


def request(
    name: str,
    method: str,
    path: str,
    tests: list[str],
    *,
    body: dict[str, Any] | str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    credential: str | None = None,
    prerequest: list[str] | None = None,
    description: str = "",
) -> dict[str, Any]:
    """Build one collection item; `path` may hold `:variable` segments filled from collection variables.

    `credential` names the variable whose key or token the request sends (see CREDENTIALS); the request
    is skipped while that variable is empty. A `body` given as a string is sent as it is.
    """
    segments = [segment for segment in path.split("/") if segment]
    header_list = [{"key": key, "value": value} for key, value in (headers or {}).items()]
    pre = list(prerequest or [])
    if credential is not None:
        header, value, source = CREDENTIALS[credential]
        header_list.append({"key": header, "value": value})
        pre = skip_without(credential, source) + pre
    if body is not None and not any(key.lower() == "content-type" for key in (headers or {})):
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
        raw_body = body if isinstance(body, str) else json.dumps(body, indent=2)
        item["request"]["body"] = {"mode": "raw", "raw": raw_body}
    if pre:
        item["event"].insert(0, {"listen": "prerequest", "script": {"type": "text/javascript", "exec": pre}})
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
                    "pm.test('names the service, its API and yt-dlp', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body).to.include.keys('name', 'version', 'api', 'docs', 'yt_dlp_version');",
                    "    pm.expect(body.api).to.eql('/api/v1');",
                    "    pm.expect(body.docs).to.eql('/docs');",
                    "});",
                    "pm.test('carries the RateLimit fields', function () {",
                    "    pm.response.to.have.header('RateLimit-Policy');",
                    "    pm.expect(pm.response.headers.get('RateLimit')).to.match(/r=\\d+;t=\\d+/);",
                    "});",
                ],
            ),
            request(
                "OpenAPI document",
                "GET",
                "/openapi.json",
                status_test(200)
                + [
                    "pm.test('documents the API', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body.openapi).to.match(/^3\\./);",
                    "    pm.expect(body.paths).to.include.keys('/api/v1/downloads', '/api/v1/auth/keys', '/api/v1/contributions/{username}');",
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
                    "pm.test('is never rate-limited', function () {",
                    "    pm.response.to.not.have.header('RateLimit');",
                    "});",
                ],
            ),
            request(
                "Readiness",
                "GET",
                "/health/ready",
                status_test(200)
                + [
                    "pm.test('reports every dependency as ok', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body.status).to.eql('ok');",
                    "    pm.expect(body.checks).to.include.keys('nats', 'redis', 'auth', 'downloader', 'contributions');",
                    "    Object.values(body.checks).forEach(function (check) {",
                    "        pm.expect(check.status).to.eql('ok');",
                    "    });",
                    "});",
                ],
                description="503 with the failing checks marked `unavailable` while a dependency is down.",
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
                [
                    "const configured = Boolean(pm.variables.get('captchaToken'));",
                    "pm.test('status is 400 (captcha configured) or 501 (not configured)', function () {",
                    "    pm.expect(pm.response.code).to.eql(configured ? 400 : 501);",
                    "});",
                    "if (pm.response.code === 400) {",
                    "    pm.test('names the failure and the provider codes', function () {",
                    "        const problem = pm.response.json();",
                    "        pm.expect(problem.type).to.eql('urn:nadzu:problem:invalid-captcha');",
                    "        pm.expect(problem.errors.map(function (error) { return error.code; })).to.include('invalid-input-response');",
                    "    });",
                    "}",
                ],
                body={"captcha_token": "not-a-real-token"},
                description="400 `invalid-captcha` once RECAPTCHA_SECRET is set; 501 while it is unset.",
            ),
            request(
                "Create a session",
                "POST",
                "/api/v1/auth/session",
                status_test(200)
                + [
                    "pm.test('issues a bearer token', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body.token_type).to.eql('Bearer');",
                    "    pm.expect(body.access_token).to.be.a('string').that.is.not.empty;",
                    "    pm.expect(body.expires_in).to.be.above(0);",
                    "    pm.collectionVariables.set('sessionToken', body.access_token);",
                    "});",
                ],
                body={"captcha_token": "{{captchaToken}}"},
                prerequest=skip_without("captchaToken", "NADZU_CAPTCHA_TOKEN, a fresh reCAPTCHA token"),
                description="Takes a reCAPTCHA token from the site's widget; each token works once.",
            ),
            request(
                "Current caller with a session",
                "GET",
                "/api/v1/auth/me",
                status_test(200)
                + [
                    "pm.test('describes the session', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body).to.include.keys('tier', 'scopes', 'limits');",
                    "    pm.expect(body.scopes).to.include('downloads');",
                    "    pm.expect(body).to.not.have.property('key_id');",
                    "});",
                ],
                credential="sessionToken",
            ),
            request(
                "Current caller",
                "GET",
                "/api/v1/auth/me",
                status_test(200)
                + [
                    "pm.test('describes the key', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body).to.include.keys('tier', 'scopes', 'key_id', 'limits');",
                    "    pm.expect(body.scopes).to.be.an('array');",
                    "    pm.expect(body.limits.requests).to.include.keys('quota', 'window');",
                    "});",
                ],
                credential="apiKey",
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
                "Current caller with an unknown key",
                "GET",
                "/api/v1/auth/me",
                status_test(401)
                + problem_test("invalid-key")
                + [
                    "pm.test('names the rejected token', function () {",
                    "    pm.expect(pm.response.headers.get('WWW-Authenticate')).to.include('invalid_token');",
                    "});",
                ],
                headers={"X-API-Key": "nadzu_postman_unknown_0000000000000000000000000000"},
            ),
            request(
                "Create API key (admin)",
                "POST",
                "/api/v1/auth/keys",
                status_test(201)
                + [
                    "pm.test('shows the secret once', function () {",
                    "    const body = pm.response.json();",
                    f"    pm.expect(body).to.include.keys('key', {KEY_FIELDS});",
                    "    pm.expect(body.scopes).to.eql(['downloads']);",
                    "    pm.expect(body.key.startsWith(body.prefix)).to.be.true;",
                    "    pm.collectionVariables.set('key_id', body.id);",
                    "    pm.collectionVariables.set('userKey', body.key);",
                    "});",
                ],
                body={"name": "postman-{{$timestamp}}", "scopes": ["downloads"]},
                credential="apiKey",
            ),
            request(
                "List API keys (admin)",
                "GET",
                "/api/v1/auth/keys",
                status_test(200)
                + [
                    "pm.test('lists the new key without secrets', function () {",
                    "    const items = pm.response.json().items;",
                    "    pm.expect(items).to.be.an('array');",
                    "    items.forEach(function (item) {",
                    f"        pm.expect(item).to.include.keys({KEY_FIELDS});",
                    "        pm.expect(item).to.not.have.property('key');",
                    "    });",
                    "    const ids = items.map(function (item) { return item.id; });",
                    "    pm.expect(ids).to.include(pm.collectionVariables.get('key_id'));",
                    "});",
                ],
                credential="apiKey",
            ),
            request(
                "List API keys without the admin scope",
                "GET",
                "/api/v1/auth/keys",
                status_test(403),
                credential="userKey",
                description="A valid key that lacks a scope gets 403, not 401.",
            ),
            request(
                "Revoke API key (admin)",
                "DELETE",
                "/api/v1/auth/keys/:key_id",
                status_test(204),
                credential="apiKey",
            ),
            request(
                "Revoked key is rejected",
                "GET",
                "/api/v1/auth/me",
                status_test(401) + problem_test("key-revoked"),
                credential="userKey",
                description="Every gateway replica rejects a revoked key within one second.",
            ),
            request(
                "Revoke an unknown API key (admin)",
                "DELETE",
                "/api/v1/auth/keys/:unknown_id",
                status_test(404) + problem_test("key-not-found"),
                credential="apiKey",
            ),
        ],
    }


def downloads_folder() -> dict[str, Any]:
    job_shape = [
        "pm.test('is a job', function () {",
        "    const job = pm.response.json();",
        f"    pm.expect(job).to.include.keys({JOB_FIELDS});",
        "    pm.expect(job.status).to.be.oneOf(['queued', 'running', 'completed', 'failed', 'cancelled', 'expired']);",
        "    pm.expect(job.progress).to.include.keys('percent', 'downloaded_bytes', 'total_bytes', 'speed', 'eta');",
        "});",
    ]
    file_headers = [
        "pm.test('describes the file', function () {",
        "    pm.expect(pm.response.headers.get('Content-Disposition')).to.match(/^attachment; filename=.*filename\\*=UTF-8''/);",
        "    pm.expect(Number(pm.response.headers.get('Content-Length'))).to.eql(Number(pm.collectionVariables.get('file_size')));",
        "    pm.response.to.have.header('Last-Modified');",
        "    pm.expect(pm.response.headers.get('ETag')).to.eql(pm.collectionVariables.get('file_etag'));",
        "    pm.expect(pm.response.headers.get('Accept-Ranges')).to.eql('bytes');",
        "});",
    ]

    # Retries this request (up to 40 times, 250 ms apart) until it returns `status`, then tests it.
    def retry_until(status: int) -> list[str]:
        return [
            "const attempt = Number(pm.collectionVariables.get('attempt') || 0);",
            f"if (pm.response.code !== {status} && attempt < 40) {{",
            "    pm.collectionVariables.set('attempt', attempt + 1);",
            "    pm.execution.setNextRequest(pm.info.requestName);",
            "    setTimeout(function () {}, 250);",
            "} else {",
            "    pm.collectionVariables.set('attempt', 0);",
            f"    pm.test('status is {status}', function () {{",
            f"        pm.expect(pm.response.code).to.eql({status});",
            "    });",
            "}",
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
                    "pm.test('points at the new queued job', function () {",
                    "    const job = pm.response.json();",
                    "    pm.expect(pm.response.headers.get('Location')).to.eql('/api/v1/downloads/' + job.id);",
                    "    pm.expect(job.status).to.eql('queued');",
                    "    pm.expect(job.events_url).to.include('/api/v1/downloads/' + job.id + '/events');",
                    "    pm.collectionVariables.set('job_id', job.id);",
                    "});",
                    "pm.test('carries the enqueue budget', function () {",
                    "    pm.expect(pm.response.headers.get('RateLimit-Policy')).to.include('\"enqueue\"');",
                    "});",
                ],
                body={"url": "{{mediaUrl}}", "format": "video"},
                credential="apiKey",
            ),
            request(
                "Enqueue with an Idempotency-Key",
                "POST",
                "/api/v1/downloads",
                status_test(202)
                + job_shape
                + [
                    "pm.test('is a new job', function () {",
                    "    pm.response.to.not.have.header('Idempotent-Replayed');",
                    "    pm.collectionVariables.set('idempotent_job_id', pm.response.json().id);",
                    "});",
                ],
                body={"url": "{{mediaUrl}}", "format": "audio"},
                headers={"Idempotency-Key": "{{idempotencyKey}}"},
                credential="apiKey",
                prerequest=["pm.collectionVariables.set('idempotencyKey', 'postman-' + Date.now());"],
            ),
            request(
                "Replay the Idempotency-Key",
                "POST",
                "/api/v1/downloads",
                status_test(202)
                + [
                    "pm.test('returns the same job, marked as replayed', function () {",
                    "    pm.expect(pm.response.headers.get('Idempotent-Replayed')).to.eql('true');",
                    "    pm.expect(pm.response.json().id).to.eql(pm.collectionVariables.get('idempotent_job_id'));",
                    "});",
                ],
                body={"url": "{{mediaUrl}}", "format": "audio"},
                headers={"Idempotency-Key": "{{idempotencyKey}}"},
                credential="apiKey",
            ),
            request(
                "Reuse the Idempotency-Key with another body",
                "POST",
                "/api/v1/downloads",
                status_test(422) + problem_test("idempotency-key-reused"),
                body={"url": "{{mediaUrl}}", "format": "video"},
                headers={"Idempotency-Key": "{{idempotencyKey}}"},
                credential="apiKey",
            ),
            request(
                "Enqueue a URL that is not http(s)",
                "POST",
                "/api/v1/downloads",
                status_test(422) + problem_test("invalid-url"),
                body={"url": "ftp://example.com/video.mp4"},
                credential="apiKey",
            ),
            request(
                "Enqueue malformed JSON",
                "POST",
                "/api/v1/downloads",
                status_test(400),
                body='{"url": ',
                credential="apiKey",
            ),
            request(
                "Enqueue without a URL",
                "POST",
                "/api/v1/downloads",
                status_test(422)
                + problem_test("validation-failed")
                + [
                    "pm.test('names the missing field', function () {",
                    "    const fields = pm.response.json().errors.map(function (error) { return error.field; });",
                    "    pm.expect(fields).to.include('url');",
                    "});",
                ],
                body={"format": "video"},
                credential="apiKey",
            ),
            request(
                "Enqueue a body that is not JSON",
                "POST",
                "/api/v1/downloads",
                status_test(415) + problem_test("unsupported-media-type"),
                body="url={{mediaUrl}}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                credential="apiKey",
            ),
            request(
                "Enqueue a body over the size limit",
                "POST",
                "/api/v1/downloads",
                status_test(413) + problem_test("payload-too-large"),
                body="{}",
                credential="apiKey",
                prerequest=[
                    "pm.request.body.raw = JSON.stringify({url: 'https://example.com/' + 'a'.repeat(70000)});",
                ],
                description="70 kB, over the gateway's default MAX_REQUEST_BODY_BYTES (65536) and under Caddy's 1 MB.",
            ),
            request(
                "Enqueue without credentials",
                "POST",
                "/api/v1/downloads",
                status_test(401)
                + [
                    "pm.test('asks for credentials', function () {",
                    "    pm.response.to.have.header('WWW-Authenticate');",
                    "});",
                ],
                body={"url": "{{mediaUrl}}"},
            ),
            request(
                "Follow the download's events",
                "GET",
                "/api/v1/downloads/:job_id/events",
                status_test(200)
                + [
                    "pm.test('is an event stream that ends with the completed job', function () {",
                    "    pm.expect(pm.response.headers.get('Content-Type')).to.include('text/event-stream');",
                    "    const text = pm.response.text();",
                    "    pm.expect(text).to.match(/^id: \\S+/m);",
                    "    pm.expect(text).to.match(/^event: status$/m);",
                    "    const data = text.split(/\\r?\\n/).filter(function (line) { return line.startsWith('data:'); });",
                    "    const last = JSON.parse(data[data.length - 1].slice(5));",
                    "    pm.expect(last.job_id).to.eql(pm.collectionVariables.get('job_id'));",
                    "    pm.expect(last.status).to.eql('completed');",
                    "    const ids = text.match(/^id: \\S+$/gm);",
                    "    pm.collectionVariables.set('last_event_id', ids[ids.length - 1].slice(4));",
                    "});",
                ],
                headers={"Accept": "text/event-stream"},
                credential="apiKey",
                description="The server ends the stream after the job's terminal event.",
            ),
            request(
                "Events of a finished download, resumed at its end",
                "GET",
                "/api/v1/downloads/:job_id/events",
                status_test(204),
                headers={"Last-Event-ID": "{{last_event_id}}"},
                credential="apiKey",
                description="A Last-Event-ID at or past the terminal event gets 204, which stops browsers reconnecting.",
            ),
            request(
                "List downloads",
                "GET",
                "/api/v1/downloads",
                status_test(200)
                + [
                    "pm.test('is a page of jobs, newest first', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body.items).to.be.an('array').that.is.not.empty;",
                    "    pm.expect(body).to.have.property('next_cursor');",
                    "    body.items.forEach(function (job) { pm.expect(job.status).to.eql('completed'); });",
                    "    const ids = body.items.map(function (job) { return job.id; });",
                    "    pm.expect(ids).to.include(pm.collectionVariables.get('job_id'));",
                    "    pm.expect(ids.slice().sort().reverse()).to.eql(ids);",
                    "});",
                ],
                query={"status": "completed", "limit": "100"},
                credential="apiKey",
            ),
            request(
                "Get the completed download",
                "GET",
                "/api/v1/downloads/:job_id",
                status_test(200)
                + job_shape
                + [
                    "pm.test('has a result with a file link', function () {",
                    "    const job = pm.response.json();",
                    "    pm.expect(job.status).to.eql('completed');",
                    f"    pm.expect(job.result).to.include.keys({RESULT_FIELDS});",
                    "    pm.expect(job.result.sha256).to.match(/^[0-9a-f]{64}$/);",
                    "    pm.expect(job.result.file_url).to.include('/api/v1/downloads/' + job.id + '/file');",
                    "    pm.collectionVariables.set('file_size', job.result.size);",
                    "});",
                ],
                credential="apiKey",
            ),
            request(
                "File headers",
                "HEAD",
                "/api/v1/downloads/:job_id/file",
                status_test(200)
                + [
                    "pm.collectionVariables.set('file_etag', pm.response.headers.get('ETag'));",
                ]
                + file_headers,
                credential="apiKey",
            ),
            request(
                "Fetch the file",
                "GET",
                "/api/v1/downloads/:job_id/file",
                status_test(200)
                + file_headers
                + [
                    "pm.test('sends the whole file', function () {",
                    "    pm.expect(pm.response.responseSize).to.eql(Number(pm.collectionVariables.get('file_size')));",
                    "});",
                ],
                credential="apiKey",
            ),
            request(
                "Fetch a byte range of the file",
                "GET",
                "/api/v1/downloads/:job_id/file",
                status_test(206)
                + [
                    "pm.test('sends the first 100 bytes', function () {",
                    "    const size = pm.collectionVariables.get('file_size');",
                    "    pm.expect(pm.response.headers.get('Content-Range')).to.eql('bytes 0-99/' + size);",
                    "    pm.expect(Number(pm.response.headers.get('Content-Length'))).to.eql(100);",
                    "});",
                ],
                headers={"Range": "bytes=0-99"},
                credential="apiKey",
            ),
            request(
                "Fetch a range past the end of the file",
                "GET",
                "/api/v1/downloads/:job_id/file",
                status_test(416),
                headers={"Range": "bytes=999999999-"},
                credential="apiKey",
            ),
            request(
                "Fetch the file when it is unchanged",
                "GET",
                "/api/v1/downloads/:job_id/file",
                status_test(304),
                headers={"If-None-Match": "{{file_etag}}"},
                credential="apiKey",
            ),
            request(
                "Get an unknown download",
                "GET",
                "/api/v1/downloads/:unknown_id",
                status_test(404) + problem_test("job-not-found"),
                credential="apiKey",
            ),
            request(
                "Get a download by an id that is not a UUID",
                "GET",
                "/api/v1/downloads/not-a-uuid",
                status_test(404) + problem_test("job-not-found"),
                credential="apiKey",
            ),
            request(
                "Cancel the idempotent download",
                "DELETE",
                "/api/v1/downloads/:idempotent_job_id",
                status_test(202, 204)
                + [
                    "if (pm.response.code === 202) {",
                    "    pm.test('returns the job being cancelled', function () {",
                    "        pm.expect(pm.response.json().id).to.eql(pm.collectionVariables.get('idempotent_job_id'));",
                    "    });",
                    "}",
                ],
                credential="apiKey",
                description="202 while the job is queued or running; 204 when it already finished.",
            ),
            request(
                "Delete the completed download",
                "DELETE",
                "/api/v1/downloads/:job_id",
                status_test(204),
                credential="apiKey",
                description="Releases the file; the job becomes `expired`.",
            ),
            request(
                "File after deletion",
                "GET",
                "/api/v1/downloads/:job_id/file",
                retry_until(410),
                credential="apiKey",
                description="The downloader releases the file shortly after the delete; retried until then.",
            ),
            request(
                "Supported sites",
                "GET",
                "/api/v1/supported-sites",
                status_test(200)
                + [
                    "pm.test('lists matching extractors', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body.count).to.eql(body.items.length);",
                    "    pm.expect(body.count).to.be.above(0);",
                    "    body.items.forEach(function (item) { pm.expect(item).to.include.keys('name', 'description'); });",
                    "});",
                ],
                query={"q": "youtube"},
                description="The list comes from the downloader's yt-dlp: 503 with Retry-After while no downloader runs.",
            ),
        ],
    }


def contributions_folder() -> dict[str, Any]:
    calendar_shape = [
        "pm.test('is a contribution calendar', function () {",
        "    const body = pm.response.json();",
        f"    pm.expect(body).to.include.keys({CALENDAR_FIELDS});",
        "    pm.expect(body.streaks).to.include.keys('current', 'longest');",
        "    body.days.forEach(function (day) {",
        "        pm.expect(day).to.include.keys('date', 'count', 'level');",
        "        pm.expect(day.level).to.be.within(0, 4);",
        "    });",
        "});",
    ]
    return {
        "name": "Contributions",
        "item": [
            request(
                "Contributions of the default user",
                "GET",
                "/api/v1/contributions",
                status_test(200, 404)
                + [
                    "if (pm.response.code === 200) {",
                    *["    " + line for line in calendar_shape],
                    "} else {",
                    *["    " + line for line in problem_test("default-user-not-configured")],
                    "}",
                ],
                description="404 default-user-not-configured while GITHUB_DEFAULT_USER is unset.",
            ),
            request(
                "Contributions of a user in one year",
                "GET",
                "/api/v1/contributions/:username",
                status_test(200)
                + calendar_shape
                + [
                    "pm.test('spans the year', function () {",
                    "    const body = pm.response.json();",
                    "    pm.expect(body.from).to.eql('2025-01-01');",
                    "    pm.expect(body.to).to.eql('2025-12-31');",
                    "    pm.expect(body.days.length).to.eql(365);",
                    "});",
                ],
                query={"year": "2025"},
                description="503 with Retry-After while GITHUB_TOKEN is unset or GitHub is unreachable.",
            ),
            request(
                "Contribution heatmap as SVG",
                "GET",
                "/api/v1/contributions/:username",
                status_test(200)
                + [
                    "pm.test('is a cacheable SVG', function () {",
                    "    pm.expect(pm.response.headers.get('Content-Type')).to.include('image/svg+xml');",
                    "    pm.response.to.have.header('ETag');",
                    "    pm.response.to.have.header('Cache-Control');",
                    "    pm.expect(pm.response.text()).to.include('<svg');",
                    "});",
                ],
                query={"format": "svg"},
            ),
            request(
                "Contributions of an invalid username",
                "GET",
                "/api/v1/contributions/-not-a-login-",
                status_test(422) + problem_test("invalid-username"),
            ),
            request(
                "Contributions of an unknown user",
                "GET",
                "/api/v1/contributions/:unknown_username",
                status_test(404) + problem_test("user-not-found"),
            ),
            request(
                "Contributions with an invalid year",
                "GET",
                "/api/v1/contributions/:username",
                status_test(422) + problem_test("invalid-date-range"),
                query={"year": "20x5"},
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
            {"key": "captchaToken", "value": ""},
            {"key": "sessionToken", "value": ""},
            {"key": "userKey", "value": ""},
            {"key": "job_id", "value": ""},
            {"key": "idempotent_job_id", "value": ""},
            {"key": "idempotencyKey", "value": ""},
            {"key": "last_event_id", "value": ""},
            {"key": "file_size", "value": ""},
            {"key": "file_etag", "value": ""},
            {"key": "attempt", "value": "0"},
            {"key": "key_id", "value": "00000000-0000-7000-8000-000000000000"},
            {"key": "unknown_id", "value": "00000000-0000-7000-8000-000000000000"},
            {"key": "username", "value": "octocat"},
            {"key": "unknown_username", "value": "nadzu-no-such-user-7f3a9c"},
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
