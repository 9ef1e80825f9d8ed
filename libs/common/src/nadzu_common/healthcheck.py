"""Container health check: `python -m nadzu_common.healthcheck [SERVICE]`.

For the bus services (downloader, contributions, auth) it sends a `HealthQuery` to `<domain>.rpc.health`
over NATS (`NATS_URL`) and exits 0 when a replica replies with status `ok`. For the gateway it sends
`GET /health` to `127.0.0.1:GATEWAY_PORT`. Any other outcome, a timeout after 3 seconds included, exits 1
with one line on stderr saying why. SERVICE defaults to the `NADZU_SERVICE` variable, which the images set.

The bus check reaches any replica of the queue group, not necessarily the one in this container. It
proves that the service replies on the bus, which is what the gateway needs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.error
import urllib.request

from pydantic import ValidationError

from .bus import connect, encode
from .messages import HealthQuery, HealthReply

TIMEOUT_SECONDS = 3.0

# The subject domain of each service that replies to health queries on the bus.
BUS_DOMAINS = {
    "downloader": "downloads",
    "contributions": "contributions",
    "auth": "auth",
}


class HealthCheckFailed(Exception):
    """The service did not report itself healthy. The message contains the reason."""


async def check_bus(service: str, nats_url: str) -> None:
    """Send a health query to `<domain>.rpc.health` and raise HealthCheckFailed unless the reply is ok."""
    subject = f"{BUS_DOMAINS[service]}.rpc.health"
    servers = [server.strip() for server in nats_url.split(",") if server.strip()]
    client = await connect(servers, name=f"healthcheck-{service}")
    try:
        reply = await client.request(subject, encode(HealthQuery()), timeout=TIMEOUT_SECONDS)
    finally:
        await client.close()

    try:
        health = HealthReply.model_validate_json(reply.data)
    except ValidationError as error:
        detail = f"{error.error_count()} validation errors"
        raise HealthCheckFailed(f"invalid reply on {subject}: {detail}") from error
    if health.status != "ok":
        raise HealthCheckFailed(f"{subject} replied {health.status}: {health.detail or health.checks}")


def check_gateway(port: str) -> None:
    """Send `GET /health` to the local gateway and raise HealthCheckFailed unless it returns 200."""
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise HealthCheckFailed(f"GET {url} failed: {error}") from error
    if status != 200:
        raise HealthCheckFailed(f"GET {url} returned {status}, expected 200")


def run(service: str) -> None:
    """Run the check for `service` and raise HealthCheckFailed on any failure."""
    if service == "gateway":
        check_gateway(os.environ.get("GATEWAY_PORT", "8080"))
        return

    if service not in BUS_DOMAINS:
        known = ", ".join(["gateway", *BUS_DOMAINS])
        raise HealthCheckFailed(f"unknown service {service!r}, expected one of: {known}")

    nats_url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    try:
        # The connection retries forever on its own, so the whole exchange gets one deadline.
        asyncio.run(asyncio.wait_for(check_bus(service, nats_url), timeout=TIMEOUT_SECONDS))
    except HealthCheckFailed:
        raise
    except TimeoutError as error:
        raise HealthCheckFailed(f"no healthy reply from {service} within {TIMEOUT_SECONDS:g} s") from error
    except Exception as error:  # any NATS error (no responders, connection refused) means unhealthy
        reason = f"{type(error).__name__}: {error}"
        raise HealthCheckFailed(f"health query to {service} failed: {reason}") from error


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0] in ("-h", "--help")):
        print(__doc__, file=sys.stderr)
        return 2

    service = args[0] if args else os.environ.get("NADZU_SERVICE", "")
    if not service:
        print("healthcheck: missing service name, pass one or set NADZU_SERVICE", file=sys.stderr)
        return 2

    try:
        run(service)
    except HealthCheckFailed as error:
        print(f"healthcheck: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
