"""The checked-in OpenAPI and AsyncAPI documents: current, valid and complete."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from openapi_spec_validator import validate
from starlette.routing import Mount

from nadzu_common.auth import AuthErrorCode, AuthSubjects
from nadzu_common.bus import Subjects
from nadzu_common.contributions import CONTRIBUTIONS_GET, CONTRIBUTIONS_HEALTH
from nadzu_contributions import errors as contributions_errors
from nadzu_gateway import problems as gateway_problems
from nadzu_gateway.fastpath import FAST_PATHS
from nadzu_gateway.metrics import METRICS_PATH
from nadzu_gateway.problem_types import PROBLEM_TYPES
from scripts import contracts

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_SOURCE = ROOT / "services" / "gateway" / "src" / "nadzu_gateway"
# Routes FastAPI adds for the documentation itself.
DOCUMENTATION_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Problems any request can get, listed in the document's description rather than per operation.
# The fallbacks of `problems.handle_http_exception` are there too, in case a library raises such an error.
GLOBAL_PROBLEMS = {"not-found", "method-not-allowed", "cors-origin-not-allowed"}
GLOBAL_PROBLEMS |= {"bad-request", "unauthorized", "not-acceptable", "http-error"}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return contracts.build_openapi()


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return contracts.build_asyncapi()


def _assert_current(path: Path, document: dict[str, Any]) -> None:
    expected = contracts.render_json(document)
    current = path.read_text() if path.exists() else ""
    assert current == expected, (
        f"{path.relative_to(ROOT)} is out of date with the code; run `{contracts.REGENERATE_COMMAND}` "
        "and commit the result"
    )


def test_openapi_copy_is_current(openapi: dict[str, Any]) -> None:
    _assert_current(contracts.OPENAPI_PATH, openapi)


def test_asyncapi_copy_is_current(asyncapi: dict[str, Any]) -> None:
    _assert_current(contracts.ASYNCAPI_PATH, asyncapi)


def test_check_mode_fails_on_stale_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    fresh = tmp_path / "asyncapi.json"
    monkeypatch.setattr(contracts, "OPENAPI_PATH", stale)
    monkeypatch.setattr(contracts, "ASYNCAPI_PATH", fresh)
    monkeypatch.setattr(contracts, "ROOT", tmp_path)

    assert contracts.main(["--check"]) == 1
    assert stale.read_text() == "{}\n", "--check must not write"
    assert contracts.main([]) == 0
    assert contracts.main(["--check"]) == 0


def test_generation_ignores_hash_seed() -> None:
    # Set order follows string hashing, which differs between processes unless PYTHONHASHSEED is fixed.
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "scripts/contracts.py", "--check"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"PYTHONHASHSEED={seed}: {result.stderr}"


def test_generation_ignores_environment() -> None:
    # Each value is invalid for the service that reads it, so reading any of them would fail the script.
    invalid = {
        "MAX_REQUEST_BODY_BYTES": "1000",
        "METRICS_TOKEN": "short",
        "RATE_LIMIT_TIERS": "not json",
        "DOWNLOADER_CONCURRENCY": "many",
        "CONTRIBUTIONS_MAX_CONCURRENCY": "0",
        "LOG_LEVEL": "loud",
        "NATS_STREAM_REPLICAS": "9",
    }
    result = subprocess.run(
        [sys.executable, "scripts/contracts.py", "--check"],
        cwd=ROOT,
        env={**os.environ, **invalid},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "contracts: documents are up to date\n"


def test_openapi_is_valid(openapi: dict[str, Any]) -> None:
    validate(openapi)


# A token of 32 or more characters, as GatewaySettings requires, to build the app that serves `/metrics`.
DOCUMENT_ONLY_METRICS_TOKEN = "document-only-metrics-token-0123456789"


def _gateway_app(metrics_token: str | None) -> FastAPI:
    from nadzu_gateway.app import create_app
    from nadzu_gateway.settings import GatewaySettings

    settings = contracts.document_settings(
        GatewaySettings, session_secret=contracts.DOCUMENT_ONLY_SECRET, metrics_token=metrics_token
    )
    return create_app(settings)


def _served_by_middleware(app: FastAPI, metrics_token: str | None) -> set[tuple[str, str]]:
    """Return the operations that a middleware serves without a route, found by requests in-process."""
    if metrics_token is None:
        # Without the token the requests would reach the edge middleware, which needs Redis and NATS.
        return set()
    transport = httpx.ASGITransport(app=app)

    async def probe() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            headers = {"Authorization": f"Bearer {metrics_token}"}
            return await client.get(METRICS_PATH, headers=headers)

    response = asyncio.run(probe())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(METRICS_PATH, "get")}


@pytest.mark.parametrize("metrics_token", [None, DOCUMENT_ONLY_METRICS_TOKEN], ids=["no-token", "token"])
def test_openapi_lists_every_route(openapi: dict[str, Any], metrics_token: str | None) -> None:
    app = _gateway_app(metrics_token)
    served: set[tuple[str, str]] = set()
    # FastAPI 0.165 keeps each included router as one entry, and this walks into them.
    for route in iter_route_contexts(app.routes):
        if route.path in DOCUMENTATION_ROUTES:
            continue
        if isinstance(route.original_route, Mount):
            # A mounted ASGI app, such as a metrics exporter, serves GET at least.
            served.add((route.path, "get"))
        for method in route.methods or ():
            served.add((route.path, method.lower()))
    assert len(served) > 10, f"the route walk found too little: {served}"
    served |= {(path, "get") for path in FAST_PATHS}
    served |= _served_by_middleware(app, metrics_token)

    documented = {(path, method) for path, operations in openapi["paths"].items() for method in operations}
    missing = sorted(served - documented)
    assert not missing, f"served but not in the OpenAPI document: {missing}"


def test_openapi_independent_of_metrics_token(openapi: dict[str, Any]) -> None:
    with_token = _gateway_app(DOCUMENT_ONLY_METRICS_TOKEN).openapi()

    assert contracts.render_json(with_token) == contracts.render_json(openapi)


def test_openapi_metrics_operation(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"][METRICS_PATH]["get"]

    assert operation["security"] == [{"MetricsToken": []}]
    assert openapi["components"]["securitySchemes"]["MetricsToken"]["scheme"] == "bearer"
    assert set(operation["responses"]) == {"200", "401", "404"}
    assert "text/plain" in operation["responses"]["200"]["content"]
    problems = _operation_problems(operation)
    assert problems["401"] == {"authentication-required"}
    assert problems["404"] == {"not-found"}
    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    # Scrapes bypass the rate limiter, so no response carries the RateLimit fields.
    for response in operation["responses"].values():
        assert "RateLimit" not in response["headers"]


def _slug_literals() -> set[str]:
    """Slugs passed as string literals to the gateway's problem constructors."""
    # The position of the slug argument in each call that builds a problem response.
    slug_positions = {"Problem": 1, "Rejection": 1, "send_problem": 2, "_failed": 1}
    slugs = set()
    for path in GATEWAY_SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            position = slug_positions.get(name or "")
            if position is None or len(node.args) <= position:
                continue
            argument = node.args[position]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                slugs.add(argument.value)
    return slugs


def _problem_types_in_code() -> set[str]:
    slugs = _slug_literals()
    slugs |= {slug for slug, _ in gateway_problems._STATUS_SLUGS.values()}
    # The gateway returns auth codes as slugs, except `unavailable`, which becomes `service-unavailable`.
    slugs |= {code.value for code in AuthErrorCode if code is not AuthErrorCode.UNAVAILABLE}
    for value in vars(contributions_errors).values():
        if isinstance(value, type) and issubclass(value, contributions_errors.ContributionsError):
            slugs.add(value.slug)
    return slugs


def test_slug_scan_finds_problems() -> None:
    found = _slug_literals()
    # One slug of each kind of call, so a broken scan cannot pass by finding nothing.
    for slug in ("job-not-found", "payload-too-large", "rate-limited", "session-expired"):
        assert slug in found


def test_catalog_has_every_problem_type() -> None:
    missing = sorted(_problem_types_in_code() - set(PROBLEM_TYPES))
    assert not missing, f"add these to nadzu_gateway.problem_types.PROBLEM_TYPES: {missing}"


def test_openapi_mentions_every_problem_type(openapi: dict[str, Any]) -> None:
    text = json.dumps(openapi)
    missing = sorted(slug for slug in _problem_types_in_code() if f"urn:nadzu:problem:{slug}" not in text)
    assert not missing, f"problem types missing from the OpenAPI document: {missing}"


def _operation_problems(operation: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for status, response in operation["responses"].items():
        content = response.get("content", {}).get("application/problem+json")
        if content is not None:
            found[status] = set(content["examples"])
    return found


def test_every_catalog_problem_is_on_an_operation(openapi: dict[str, Any]) -> None:
    used = set()
    for operations in openapi["paths"].values():
        for operation in operations.values():
            for slugs in _operation_problems(operation).values():
                used |= slugs
    unused = sorted(set(PROBLEM_TYPES) - used - GLOBAL_PROBLEMS)
    assert not unused, f"problem types no operation lists: {unused}"


@pytest.mark.parametrize(
    ("path", "method", "status", "slug"),
    [
        ("/api/v1/downloads", "post", "422", "invalid-url"),
        ("/api/v1/downloads", "post", "413", "payload-too-large"),
        ("/api/v1/downloads", "post", "429", "too-many-active-jobs"),
        ("/api/v1/downloads/{job_id}/file", "get", "409", "job-not-completed"),
        ("/api/v1/downloads/{job_id}/file", "head", "416", "range-not-satisfiable"),
        ("/api/v1/downloads/{job_id}/events", "get", "401", "link-expired"),
        ("/api/v1/auth/me", "get", "401", "authentication-required"),
        ("/api/v1/auth/keys", "post", "403", "forbidden"),
        ("/api/v1/auth/session", "post", "501", "captcha-not-configured"),
        ("/api/v1/contributions/{username}", "get", "503", "github-rate-limited"),
        ("/api/v1/supported-sites", "get", "502", "bad-gateway"),
    ],
)
def test_operation_lists_problem(
    openapi: dict[str, Any], path: str, method: str, status: str, slug: str
) -> None:
    problems = _operation_problems(openapi["paths"][path][method])
    assert slug in problems.get(status, set()), f"{method.upper()} {path}: {problems}"


def test_me_needs_no_scope(openapi: dict[str, Any]) -> None:
    problems = _operation_problems(openapi["paths"]["/api/v1/auth/me"]["get"])
    assert "authentication-required" in problems["401"]
    assert "403" not in problems


def test_health_needs_no_credentials(openapi: dict[str, Any]) -> None:
    for path in ("/health", "/health/ready"):
        operation = openapi["paths"][path]["get"]
        assert operation["security"] == []
        assert not _operation_problems(operation)


def test_openapi_security(openapi: dict[str, Any]) -> None:
    assert set(openapi["components"]["securitySchemes"]) == {"ApiKey", "Bearer", "JobLink", "MetricsToken"}
    paths = openapi["paths"]
    assert paths["/api/v1/downloads"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert {"JobLink": []} in paths["/api/v1/downloads/{job_id}/events"]["get"]["security"]
    # Anonymous endpoints take credentials optionally.
    assert {} in paths["/api/v1/auth/session"]["post"]["security"]


def test_openapi_special_responses(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]
    events = paths["/api/v1/downloads/{job_id}/events"]["get"]["responses"]
    assert "text/event-stream" in events["200"]["content"]
    assert "204" in events
    file_get = paths["/api/v1/downloads/{job_id}/file"]["get"]
    assert {"206", "304", "416"} <= set(file_get["responses"])
    headers = {parameter["name"] for parameter in file_get["parameters"] if parameter["in"] == "header"}
    assert {"Range", "If-None-Match", "If-Range"} <= headers
    calendar = paths["/api/v1/contributions/{username}"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "image/svg+xml"} <= set(calendar)
    me = paths["/api/v1/auth/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert me == {"$ref": "#/components/schemas/CallerOut"}


def test_openapi_request_examples(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    for name in ("DownloadCreate", "SessionCreate", "KeyCreate", "JobOut", "KeyCreated", "CallerOut"):
        assert schemas[name].get("examples"), f"{name} has no example"


def test_key_created_response_documented(openapi: dict[str, Any]) -> None:
    created = openapi["paths"]["/api/v1/auth/keys"]["post"]["responses"]["201"]

    assert created["description"] != "Successful Response"
    assert "`key`" in created["description"]
    example = created["content"]["application/json"]["example"]
    assert example["key"].startswith("nadzu_")
    required = openapi["components"]["schemas"]["KeyCreated"]["required"]
    assert set(required) <= set(example)


# AsyncAPI.


def _bus_subjects() -> set[str]:
    """Every concrete subject or subject pattern the code names."""
    subjects = {value for name, value in vars(Subjects).items() if name.isupper()}
    subjects |= {value for name, value in vars(AuthSubjects).items() if name.isupper()}
    subjects |= {CONTRIBUTIONS_GET, CONTRIBUTIONS_HEALTH}
    # A stream pattern, not a subject anyone publishes to.
    subjects.discard(AuthSubjects.EVENTS)
    return subjects


def _channel_for(asyncapi: dict[str, Any], subject: str) -> dict[str, Any] | None:
    for channel in asyncapi["channels"].values():
        address = channel["address"]
        if address is None:
            continue
        if address == subject:
            return channel
        if subject.endswith(".>") and "{" in address and address.startswith(subject[:-1]):
            return channel
    return None


def test_asyncapi_has_every_subject(asyncapi: dict[str, Any]) -> None:
    missing = sorted(subject for subject in _bus_subjects() if _channel_for(asyncapi, subject) is None)
    assert not missing, f"subjects missing from the AsyncAPI document: {missing}"


def test_asyncapi_has_every_service_subscriber(asyncapi: dict[str, Any]) -> None:
    for service, broker in contracts.service_brokers():
        for subscriber in broker.subscribers:
            for spec in subscriber.schema().values():
                channel = _channel_for(asyncapi, spec.address)
                assert channel is not None, f"{service} subscribes to {spec.address}, which is not documented"
                receivers = [
                    operation
                    for operation in asyncapi["operations"].values()
                    if operation["action"] == "receive"
                    and operation["x-service"] == service
                    and asyncapi["channels"][operation["channel"]["$ref"].split("/")[-1]] is channel
                ]
                assert receivers, f"no {service} receive operation on {spec.address}"


def test_asyncapi_every_subject_has_sender_and_receiver(asyncapi: dict[str, Any]) -> None:
    actions: dict[str, set[str]] = {}
    for operation in asyncapi["operations"].values():
        key = operation["channel"]["$ref"].split("/")[-1]
        actions.setdefault(key, set()).add(operation["action"])
    for key, channel in asyncapi["channels"].items():
        if channel["address"] is None:
            continue  # reply inboxes
        expected = {"send"} if ".dlq." in channel["address"] else {"send", "receive"}
        assert expected <= actions.get(key, set()), f"{channel['address']}: {actions.get(key)}"


def test_asyncapi_rpc_subjects_have_replies(asyncapi: dict[str, Any]) -> None:
    for name, operation in asyncapi["operations"].items():
        if ".rpc." in operation["channel"]["$ref"]:
            assert "reply" in operation, f"{name} has no reply"


def test_asyncapi_payloads_are_the_models(asyncapi: dict[str, Any]) -> None:
    def payload(subject: str) -> set[str]:
        channel = _channel_for(asyncapi, subject)
        assert channel is not None
        names = set()
        for ref in channel["messages"].values():
            message = asyncapi["components"]["messages"][ref["$ref"].split("/")[-1]]
            names.add(message["payload"]["$ref"].split("/")[-1])
        return names

    assert payload(Subjects.DOWNLOAD_ENQUEUE) == {"EnqueueDownload"}
    assert payload(Subjects.DOWNLOAD_EVENTS) == {"JobEvent"}
    assert payload(Subjects.DOWNLOAD_CANCEL) == {"CancelDownload"}
    assert payload(Subjects.DOWNLOAD_DEAD_LETTERS) == {"EnqueueDownload"}
    assert payload(AuthSubjects.KEY_REVOKED) == {"KeyRevoked"}
    assert payload(AuthSubjects.VERIFY_KEY) == {"VerifyKeyQuery"}
    assert payload(Subjects.DOWNLOAD_HEALTH) == {"HealthQuery"}
    job_event = asyncapi["components"]["schemas"]["JobEvent"]
    assert job_event["properties"]["v"]["const"] == 1
    assert "version `v` 1" in asyncapi["components"]["messages"]["JobEvent"]["description"]


def test_enqueue_summary_names_payload_fields(asyncapi: dict[str, Any]) -> None:
    summary = asyncapi["components"]["messages"]["EnqueueDownload"]["summary"]
    schemas = asyncapi["components"]["schemas"]

    names = re.findall(r"`([a-z_]+(?:\.[a-z_]+)?)`", summary.removeprefix(f"`{Subjects.DOWNLOAD_ENQUEUE}`"))
    assert names, summary
    for name in names:
        field, _, subfield = name.partition(".")
        assert field in schemas["EnqueueDownload"]["properties"], name
        if subfield:
            assert subfield in schemas["JobState"]["properties"], name


def test_asyncapi_headers(asyncapi: dict[str, Any]) -> None:
    messages = asyncapi["components"]["messages"]
    for name in ("EnqueueDownload", "JobEvent", "KeyRevoked"):
        headers = messages[name]["headers"]["properties"]
        assert {"Nats-Msg-Id", "X-Request-Id", "traceparent"} <= set(headers), name
    assert "Nadzu-Error-Code" in messages["EnqueueDownload.deadLetter"]["headers"]["properties"]
    assert "Nats-Msg-Id" not in messages["HealthQuery"]["headers"]["properties"]


def test_asyncapi_references_resolve(asyncapi: dict[str, Any]) -> None:
    def resolve(ref: str) -> Any:
        node: Any = asyncapi
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                assert resolve(node["$ref"]) is not None, node["$ref"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(asyncapi)
