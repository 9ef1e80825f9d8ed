"""Write the contract documents from code: docs/openapi.json (gateway) and docs/asyncapi.json (bus).

    .venv/bin/python scripts/contracts.py           # rewrite both documents
    .venv/bin/python scripts/contracts.py --check   # exit 1 when a checked-in copy is stale

`make contracts` runs the first form. The OpenAPI document comes from the gateway's FastAPI app. The
AsyncAPI document comes from the FastStream brokers of the downloader, contributions and auth services,
plus the declarations in `nadzu_common.contracts` for traffic sent with nats-py. The services' settings
are built from their defaults alone, never from environment variables or a .env file, so regenerating on
another machine, or in a shell with the services' variables set, gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

ROOT = Path(__file__).resolve().parents[1]
OPENAPI_PATH = ROOT / "docs" / "openapi.json"
ASYNCAPI_PATH = ROOT / "docs" / "asyncapi.json"
REGENERATE_COMMAND = "make contracts"
# The server named in the AsyncAPI document: NATS_URL's default for local runs.
DOCUMENTED_NATS_URL = "nats://127.0.0.1:4222"
# Placeholder for settings that the services require but the documents never show.
DOCUMENT_ONLY_SECRET = "document-only-secret-never-used-to-sign"  # noqa: S105 - not a credential

SettingsT = TypeVar("SettingsT", bound=BaseSettings)

ASYNCAPI_DESCRIPTION = """\
Every subject of the Nadzu bus, generated from the services' FastStream brokers and the message models \
in `nadzu_common`.

Subjects are `<domain>.<kind>.<name>`: `cmd` (JetStream commands, handled once), `ctl` (core NATS \
broadcasts to every replica), `evt` (JetStream events), `dlq` (dead letters) and `rpc` (core NATS \
request/reply in a queue group). Operation ids are `<service>.<send|receive>.<channel>`.

Every payload carries `v`, its schema version (now 1). Adding an optional field keeps the version, and \
consumers ignore fields they do not know. Removing or renaming a field, or changing its meaning, needs \
a new version, and consumers reject versions they do not know. JetStream messages carry `Nats-Msg-Id` \
for de-duplication; every message may carry `X-Request-Id` and W3C `traceparent`/`tracestate`. \
docs/events.md explains how to follow jobs."""


def render_json(document: dict[str, Any]) -> str:
    """Serialize a document as it is checked in: indented, UTF-8, with a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def document_settings(settings_class: type[SettingsT], **values: Any) -> SettingsT:
    """Build `settings_class` from `values` and its defaults, without reading the environment or .env."""

    class DefaultSettings(settings_class):  # type: ignore[valid-type, misc]
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    return cast(SettingsT, DefaultSettings(**values))


def build_openapi() -> dict[str, Any]:
    from nadzu_gateway.app import create_app
    from nadzu_gateway.settings import GatewaySettings

    settings = document_settings(GatewaySettings, session_secret=DOCUMENT_ONLY_SECRET)
    return create_app(settings).openapi()


def service_brokers() -> list[tuple[str, Any]]:
    """Return `(service, broker)` for every service, built as each service builds it, never connected."""
    from nadzu_auth.handlers import register_handlers
    from nadzu_auth.service import declare_revocation_publisher, make_broker
    from nadzu_auth.settings import AuthSettings
    from nadzu_common.contracts import downloader_broker, gateway_broker, healthcheck_broker
    from nadzu_contributions.handlers import create_broker
    from nadzu_contributions.settings import ContributionsSettings
    from nadzu_downloader.app import create_app as create_downloader
    from nadzu_downloader.settings import DownloaderSettings

    downloader = create_downloader(document_settings(DownloaderSettings))
    # The handlers only close over these objects, and declaring the subscribers never calls them.
    contributions = create_broker(document_settings(ContributionsSettings), cast(Any, None))
    auth_settings = document_settings(AuthSettings, session_secret=DOCUMENT_ONLY_SECRET)
    auth = make_broker(auth_settings)
    declare_revocation_publisher(auth)
    register_handlers(auth, cast(Any, None), cast(Any, None), cast(Any, None))

    return [
        ("auth", auth),
        ("contributions", contributions),
        ("downloader", downloader.broker),
        ("downloader", downloader_broker()),
        ("gateway", gateway_broker()),
        ("healthcheck", healthcheck_broker()),
    ]


def build_asyncapi() -> dict[str, Any]:
    from nadzu_common.asyncapi import build_asyncapi as build

    return build(
        service_brokers(),
        title="Nadzu message bus",
        version=version("nadzu-common"),
        description=ASYNCAPI_DESCRIPTION,
        server_url=DOCUMENTED_NATS_URL,
    )


def rendered_documents() -> dict[Path, str]:
    """Return each document path with the text it should contain."""
    return {OPENAPI_PATH: render_json(build_openapi()), ASYNCAPI_PATH: render_json(build_asyncapi())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a checked-in document is stale"
    )
    args = parser.parse_args(argv)

    stale = []
    for path, text in rendered_documents().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
            print(f"contracts: wrote {path.relative_to(ROOT)}")

    if args.check and stale:
        names = ", ".join(str(path.relative_to(ROOT)) for path in stale)
        print(f"contracts: {names} out of date; run `{REGENERATE_COMMAND}`", file=sys.stderr)
        return 1
    if not stale:
        print("contracts: documents are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
