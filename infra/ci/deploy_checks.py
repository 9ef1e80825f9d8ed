"""Consistency checks of the deploy files, run by infra/ci/check-deploy.sh in its tools environment.

`python deploy_checks.py CHECK` runs one check, prints what it found on stderr and exits non-zero on a
failure. The checks need PyYAML, jsonschema (from check-jsonschema), python-hcl2 and the KEDA models of
cloudcoil-models-keda, all listed in requirements-deploy.txt.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "downloader", "contributions", "auth")


class CheckFailed(Exception):
    """A deploy file is invalid or inconsistent; the message lists every problem found."""


def fail_if(problems: list[str]) -> None:
    if problems:
        raise CheckFailed("\n".join(problems))


# Shared data.


def config_variables() -> dict[str, set[str]]:
    """Read infra/ci/config-vars.txt: variable name to the services that read it."""
    variables: dict[str, set[str]] = {}
    for line in (ROOT / "infra/ci/config-vars.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, services = line.split()
        variables[name] = set(SERVICES) if services == "all" else set(services.split(","))
    return variables


def cloudflare_ranges() -> list[str]:
    lines = (ROOT / "infra/cloudflare/ip-ranges.txt").read_text().splitlines()
    ranges = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for cidr in ranges:
        ipaddress.ip_network(cidr)
    return ranges


class ComposeLoader(yaml.SafeLoader):
    """YAML loader that accepts the compose merge tags `!reset` and `!override` of override files."""


def _construct_tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _construct_tagged)
ComposeLoader.add_constructor("!override", _construct_tagged)


def load_compose(name: str) -> dict[str, Any]:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)  # noqa: S506 (a SafeLoader subclass)


def rendered_manifests(overlay: str) -> list[dict[str, Any]]:
    """Render a Kustomize directory with `kubectl kustomize`, which works without a cluster."""
    output = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


# Compose.


def compose_schema() -> dict[str, Any]:
    """Load the compose specification's JSON schema that check-jsonschema vendors."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def check_compose_schema() -> None:
    import jsonschema

    validator = jsonschema.Draft7Validator(compose_schema())
    problems = []
    for name in ("docker-compose.yml", "docker-compose.dev.yml"):
        for error in validator.iter_errors(load_compose(name)):
            location = "/".join(str(part) for part in error.absolute_path)
            problems.append(f"{name}: {location}: {error.message}")
    fail_if(problems)


def check_compose_consistency() -> None:
    compose = load_compose("docker-compose.yml")
    dev = load_compose("docker-compose.dev.yml")
    services = compose["services"]
    problems: list[str] = []

    for service in SERVICES:
        build = services[service].get("build", {})
        if (
            build.get("dockerfile") != "infra/docker/Dockerfile"
            or build.get("args", {}).get("SERVICE") != service
        ):
            problems.append(f"{service}: build must use infra/docker/Dockerfile with SERVICE={service}")

    # Every variable reaches every service that reads it.
    for variable, readers in config_variables().items():
        for service in sorted(readers):
            if variable not in services[service].get("environment", {}):
                problems.append(f"{service}: environment lacks {variable}")

    # A health-gated dependency must have a health check to wait for (the images bring their own).
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            has_check = "healthcheck" in services[dependency] or dependency in SERVICES
            if condition.get("condition") == "service_healthy" and not has_check:
                problems.append(f"{name}: waits for {dependency} to be healthy, which has no healthcheck")

    # Only the downloader reaches the WARP proxy, and the downloader reaches nothing else outside.
    networks = compose["networks"]
    for name, service in services.items():
        if "egress" in (service.get("networks") or {}) and name not in ("downloader", "warp"):
            problems.append(f"{name}: joins the egress network, which is for the downloader and WARP only")
    for network in ("egress", "backend", "edge"):
        if not networks[network].get("internal"):
            problems.append(f"network {network} must be internal (no route out)")
    if set(services["downloader"]["networks"]) != {"backend", "egress"}:
        problems.append("downloader: must join only the backend and egress networks")
    if "warp" not in services["downloader"]["environment"]["DOWNLOADER_PROXY_URL"]:
        problems.append("downloader: DOWNLOADER_PROXY_URL must point at the warp service")

    # The gateway reads the downloads volume only; the downloader writes it.
    if "downloads:/data/downloads:ro" not in services["gateway"]["volumes"]:
        problems.append("gateway: must mount the downloads volume read-only")
    if "downloads:/data/downloads" not in services["downloader"]["volumes"]:
        problems.append("downloader: must mount the downloads volume read-write")

    # The gateway trusts Caddy's network and exactly the Cloudflare ranges that Caddy trusts.
    trusted = services["gateway"]["environment"]["TRUSTED_PROXIES"]
    match = re.fullmatch(r"\$\{TRUSTED_PROXIES:-(.*)\}", trusted)
    if not match:
        problems.append("gateway: TRUSTED_PROXIES must default to the edge subnet and Cloudflare's ranges")
    else:
        listed = match.group(1).split(",")
        edge_subnet = networks["edge"]["ipam"]["config"][0]["subnet"]
        if listed[0] != edge_subnet:
            problems.append(f"gateway: TRUSTED_PROXIES must start with the edge subnet {edge_subnet}")
        if listed[1:] != cloudflare_ranges():
            problems.append("gateway: TRUSTED_PROXIES differs from infra/cloudflare/ip-ranges.txt")
        caddy_address = services["caddy"]["networks"]["edge"]["ipv4_address"]
        if ipaddress.ip_address(caddy_address) not in ipaddress.ip_network(edge_subnet):
            problems.append("caddy: its edge address lies outside the edge subnet")

    # Stop grace periods exceed the services' own shutdown timeouts.
    minimum_grace = {"gateway": 15, "downloader": 25, "auth": 15, "contributions": 15}
    for service, minimum in minimum_grace.items():
        grace = int(services[service].get("stop_grace_period", "10s").rstrip("s"))
        if grace < minimum:
            problems.append(f"{service}: stop_grace_period {grace}s is shorter than its drain time")

    # The development override keeps published ports on loopback.
    for name, service in dev["services"].items():
        for port in service.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                problems.append(f"docker-compose.dev.yml: {name} publishes {port} beyond 127.0.0.1")
    fail_if(problems)


# Caddy.


def check_caddy_adapted(path: str) -> None:
    """Check the JSON that `caddy adapt` made of a Caddyfile (read from stdin)."""
    config = json.load(sys.stdin)
    problems = []
    text = json.dumps(config)

    reverse_proxies = list(find_handlers(config, "reverse_proxy"))
    if not reverse_proxies:
        problems.append("no reverse_proxy handler")
    for handler in reverse_proxies:
        if handler.get("flush_interval") != -1:
            problems.append("reverse_proxy must set flush_interval -1 so SSE is never buffered")

    if '"max_size"' not in text:
        problems.append("no request body limit (request_body max_size)")
    for header in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options"):
        if header not in text:
            problems.append(f"security header {header} missing")
    if not list(find_handlers(config, "file_server")):
        problems.append("no file_server for the admin file browser")
    if not list(find_handlers(config, "authentication")):
        problems.append("the admin file browser has no password")
    if '"remote_ip"' not in text and '"client_ip"' not in text:
        problems.append("the admin file browser has no IP allow-list")

    if path.endswith("Caddyfile"):
        servers = config["apps"]["http"]["servers"]
        for name, server in servers.items():
            trusted = server.get("trusted_proxies", {}).get("ranges", [])
            if trusted != cloudflare_ranges():
                problems.append(f"server {name}: trusted_proxies differs from infra/cloudflare/ip-ranges.txt")
        if '"client_ip"' not in text:
            problems.append("behind Cloudflare the allow-list must match client_ip, not the proxy's address")
    fail_if(problems)


def find_handlers(node: Any, kind: str) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("handler") == kind:
            yield node
        for value in node.values():
            yield from find_handlers(value, kind)
    elif isinstance(node, list):
        for value in node:
            yield from find_handlers(value, kind)


# Kubernetes.


def env_names(container: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> dict[str, str]:
    """Variables a container gets, each with where it comes from."""
    names: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = source.get("configMapRef", {}).get("name")
        for key in config_maps.get(config_map, {}):
            names[key] = f"configmap {config_map}"
    for entry in container.get("env", []):
        value_from = entry.get("valueFrom", {})
        if "secretKeyRef" in value_from:
            names[entry["name"]] = "secret " + value_from["secretKeyRef"]["name"]
        elif "configMapKeyRef" in value_from:
            names[entry["name"]] = "configmap " + value_from["configMapKeyRef"]["name"]
        else:
            names[entry["name"]] = "value"
    return names


def check_k8s(overlay: str) -> None:
    documents = rendered_manifests(overlay)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for document in documents:
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    problems: list[str] = []

    config_maps = {name: doc.get("data", {}) for name, doc in by_kind.get("ConfigMap", {}).items()}
    deployments = by_kind.get("Deployment", {})
    secret_variables = {
        "DATABASE_URL",
        "REDIS_URL",
        "SESSION_SECRET",
        "ADMIN_API_KEY",
        "RECAPTCHA_SECRET",
        "GITHUB_TOKEN",
        "METRICS_TOKEN",
    }

    for service in SERVICES:
        if service not in deployments:
            problems.append(f"no Deployment {service}")
            continue
        pod = deployments[service]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        names = env_names(container, config_maps)

        for variable, readers in config_variables().items():
            if service not in readers:
                continue
            if variable not in names:
                problems.append(f"{service}: {variable} is neither in a ConfigMap nor referenced")
            elif variable in secret_variables and not names[variable].startswith("secret"):
                problems.append(f"{service}: {variable} must come from a Secret, not {names[variable]}")

        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                problems.append(f"{service}: no {probe}")
        resources_ = container.get("resources", {})
        if "requests" not in resources_ or "memory" not in resources_.get("limits", {}):
            problems.append(f"{service}: needs resource requests and a memory limit")
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{service}: must run as non-root")

        # The grace period covers the service's own drain time.
        drain = {"gateway": 10 + 5, "downloader": 20, "contributions": 10, "auth": 10}[service]
        if pod.get("terminationGracePeriodSeconds", 30) <= drain:
            problems.append(
                f"{service}: terminationGracePeriodSeconds must exceed its drain time ({drain} s)"
            )

        if service not in by_kind.get("PodDisruptionBudget", {}):
            problems.append(f"{service}: no PodDisruptionBudget")

    claim = by_kind.get("PersistentVolumeClaim", {}).get("nadzu-downloads")
    if not claim or claim["spec"]["accessModes"] != ["ReadWriteMany"]:
        problems.append("the downloads claim must be ReadWriteMany")

    hpa = by_kind.get("HorizontalPodAutoscaler", {}).get("gateway")
    if not hpa or hpa["spec"]["scaleTargetRef"]["name"] != "gateway":
        problems.append("no HorizontalPodAutoscaler for the gateway")

    scaled = by_kind.get("ScaledObject", {}).get("downloader")
    if not scaled:
        problems.append("no ScaledObject for the downloader")
    else:
        problems += check_scaled_object(scaled)

    if overlay.endswith("production"):
        if config_maps["nadzu-config"].get("NATS_STREAM_REPLICAS") != "3":
            problems.append("production: NATS_STREAM_REPLICAS must be 3 on the 3-node JetStream cluster")
        for deployment in deployments.values():
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                if container["image"].endswith(":latest"):
                    problems.append(f"production: {container['image']} must be pinned to a release")
    fail_if(problems)


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Forbid properties that a schema does not name, as `kubectl apply --validate=strict` would."""

    def tighten(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                tighten(value)
        elif isinstance(node, list):
            for value in node:
                tighten(value)

    tighten(schema)
    return schema


def check_scaled_object(scaled: dict[str, Any]) -> list[str]:
    """Validate the ScaledObject against KEDA's CRD schema and against the bus's names."""
    import jsonschema
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    problems = []
    schema = strict_schema(ScaledObject.model_json_schema(by_alias=True))
    for error in jsonschema.Draft202012Validator(schema).iter_errors(scaled):
        location = "/".join(str(part) for part in error.absolute_path)
        problems.append(f"ScaledObject {location}: {error.message}")

    # Keys the nats-jetstream scaler reads (KEDA 2.10 and later).
    known_keys = {
        "natsServerMonitoringEndpoint",
        "account",
        "stream",
        "consumer",
        "lagThreshold",
        "activationLagThreshold",
        "useHttps",
    }
    bus = (ROOT / "libs/common/src/nadzu_common/bus.py").read_text()
    for trigger in scaled["spec"]["triggers"]:
        if trigger["type"] != "nats-jetstream":
            continue
        metadata = trigger["metadata"]
        unknown = set(metadata) - known_keys
        if unknown:
            problems.append(f"ScaledObject: unknown nats-jetstream metadata {sorted(unknown)}")
        if f'name="{metadata.get("stream")}"' not in bus:
            problems.append(
                f"ScaledObject: stream {metadata.get('stream')} is not declared in nadzu_common.bus"
            )
        if f'= "{metadata.get("consumer")}"' not in bus:
            problems.append(
                f"ScaledObject: consumer {metadata.get('consumer')} is not declared in nadzu_common.bus"
            )
        if not metadata.get("natsServerMonitoringEndpoint", "").endswith(":8222"):
            problems.append("ScaledObject: the monitoring endpoint must use the chart's monitor port 8222")
    return problems


def check_nats_values() -> None:
    values = yaml.safe_load((ROOT / "k8s/nats/values.yaml").read_text())
    config = values["config"]
    problems = []
    if not config["cluster"]["enabled"] or config["cluster"]["replicas"] != 3:
        problems.append("NATS values: the cluster must be enabled with 3 replicas")
    jetstream = config["jetstream"]
    if (
        not jetstream["enabled"]
        or not jetstream["fileStore"]["enabled"]
        or not jetstream["fileStore"]["pvc"]["enabled"]
    ):
        problems.append("NATS values: JetStream needs a file store on a persistent volume")
    if not config["monitor"]["enabled"] or config["monitor"]["port"] != 8222:
        problems.append("NATS values: the monitor port 8222 is what KEDA reads")
    fail_if(problems)


# Terraform.


def hcl_files(directory: Path) -> dict[str, dict[str, Any]]:
    import hcl2

    parsed = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed[path.name] = hcl2.load(handle)
    return parsed


def blocks(parsed: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for document in parsed.values():
        for entry in document.get(kind, []):
            for name, body in entry.items():
                found[name.strip('"')] = body
    return found


def references(text: str, prefix: str) -> set[str]:
    return set(re.findall(rf"\b{prefix}\.([A-Za-z_][A-Za-z0-9_]*)", text))


def template_placeholders(template: str) -> set[str]:
    """Names a Terraform template reads: identifiers inside `${...}`, skipping `$${` escapes and calls."""
    names: set[str] = set()
    for expression in re.findall(r"(?<!\$)\$\{([^}]*)\}", template):
        without_strings = re.sub(r'"[^"]*"', "", expression)
        names |= set(re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()", without_strings))
    return names


def check_terraform() -> None:
    import hcl2

    terraform = ROOT / "infra/terraform"
    problems: list[str] = []

    # Every HCL file parses, the examples included.
    for path in sorted(terraform.rglob("*")):
        if path.suffix in (".tf", ".hcl", ".tfvars") or path.name.endswith(
            (".hcl.example", ".tfvars.example")
        ):
            with path.open() as handle:
                try:
                    hcl2.load(handle)
                except Exception as error:  # python-hcl2 raises lark errors of several kinds
                    problems.append(f"{path.relative_to(ROOT)}: does not parse: {error}")
    fail_if(problems)

    modules = {path.parent for path in terraform.glob("modules/*/*.tf")}
    roots = {path.parent for path in terraform.glob("accounts/*/*.tf")}
    module_variables: dict[Path, dict[str, dict[str, Any]]] = {}

    for directory in sorted(modules | roots):
        parsed = hcl_files(directory)
        source_text = "\n".join(path.read_text() for path in directory.glob("*.tf"))
        declared = blocks(parsed, "variable")
        module_variables[directory] = declared
        label = directory.relative_to(ROOT)

        used = references(source_text, "var")
        for name in sorted(used - set(declared)):
            problems.append(f"{label}: var.{name} is used but not declared")
        for name in sorted(set(declared) - used):
            problems.append(f"{label}: variable {name} is declared but never used")
        for name, body in declared.items():
            if "description" not in body or "type" not in body:
                problems.append(f"{label}: variable {name} needs a type and a description")

        locals_declared: set[str] = set()
        for document in parsed.values():
            for entry in document.get("locals", []):
                locals_declared |= set(entry)
        for name in sorted(references(source_text, "local") - locals_declared):
            problems.append(f"{label}: local.{name} is used but not declared")

        for name, body in blocks(parsed, "output").items():
            if "description" not in body:
                problems.append(f"{label}: output {name} needs a description")

        # templatefile() gets exactly the names its template reads.
        for match in re.finditer(
            r'templatefile\("\$\{path\.module\}/([^"]+)",\s*\{(.*?)\n\s*\}\)', source_text, re.S
        ):
            template = (directory / match.group(1)).read_text()
            given = set(re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", match.group(2), re.M))
            read = template_placeholders(template)
            for name in sorted(read - given):
                problems.append(f"{label}: {match.group(1)} reads {name}, which templatefile() does not pass")
            for name in sorted(given - read):
                problems.append(f"{label}: templatefile() passes {name}, which {match.group(1)} never reads")

    # Module calls pass every required variable and nothing unknown; module outputs exist.
    for directory in sorted(roots):
        parsed = hcl_files(directory)
        source_text = "\n".join(path.read_text() for path in directory.glob("*.tf"))
        label = directory.relative_to(ROOT)
        for name, body in blocks(parsed, "module").items():
            source = body["source"].strip('"')
            module_directory = (directory / source).resolve()
            variables = module_variables.get(module_directory)
            if variables is None:
                problems.append(f"{label}: module {name} points at {source}, which is no module here")
                continue
            meta_arguments = {"source", "version", "providers", "depends_on", "count", "for_each"}
            arguments = {key for key in body if not key.startswith("__")} - meta_arguments
            for argument in sorted(arguments - set(variables)):
                problems.append(f"{label}: module {name} gets {argument}, which it does not declare")
            for variable, spec in variables.items():
                if "default" not in spec and variable not in arguments:
                    problems.append(f"{label}: module {name} lacks the required variable {variable}")
            outputs = set(blocks(hcl_files(module_directory), "output"))
            for output in sorted(set(re.findall(rf"module\.{name}\.([A-Za-z_]\w*)", source_text)) - outputs):
                problems.append(f"{label}: module.{name}.{output} is not an output of the module")

        # Example variable files set only declared variables.
        declared = module_variables[directory]
        example = directory / "terraform.tfvars.example"
        if example.exists():
            with example.open() as handle:
                assigned = {key for key in hcl2.load(handle) if not key.startswith("__")}
                for name in sorted(assigned - set(declared)):
                    problems.append(f"{label}: terraform.tfvars.example sets undeclared {name}")
        if "cloudflare/ip-ranges.txt" not in source_text:
            problems.append(
                f"{label}: the firewall must take Cloudflare's ranges from infra/cloudflare/ip-ranges.txt"
            )
    fail_if(problems)


# Postman.


def check_postman() -> None:
    problems: list[str] = []
    collection_path = ROOT / "postman/nadzu.postman_collection.json"
    collection = json.loads(collection_path.read_text())
    if collection["info"]["schema"] != "https://schema.getpostman.com/json/collection/v2.1.0/collection.json":
        problems.append("the collection must declare the v2.1 schema")

    def requests(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            if "item" in item:
                yield from requests(item["item"])
            else:
                yield item

    covered = set()
    for item in requests(collection["item"]):
        request = item["request"]
        path = "/" + "/".join(request["url"]["path"])
        covered.add(f"{request['method']} {path}")
        scripts = [event for event in item.get("event", []) if event["listen"] == "test"]
        if not scripts or "pm.response.code" not in "\n".join(scripts[0]["script"]["exec"]):
            problems.append(f"{item['name']}: needs a test on the status code")
        if not request["url"]["raw"].startswith("{{baseUrl}}"):
            problems.append(f"{item['name']}: the URL must start with {{{{baseUrl}}}}")

    endpoints = [
        "GET /",
        "GET /health",
        "GET /health/ready",
        "POST /api/v1/auth/session",
        "GET /api/v1/auth/me",
        "POST /api/v1/auth/keys",
        "GET /api/v1/auth/keys",
        "DELETE /api/v1/auth/keys/:key_id",
        "POST /api/v1/downloads",
        "GET /api/v1/downloads",
        "GET /api/v1/downloads/:job_id",
        "GET /api/v1/downloads/:job_id/events",
        "GET /api/v1/downloads/:job_id/file",
        "HEAD /api/v1/downloads/:job_id/file",
        "DELETE /api/v1/downloads/:job_id",
        "GET /api/v1/supported-sites",
        "GET /api/v1/contributions",
        "GET /api/v1/contributions/:username",
    ]
    for endpoint in endpoints:
        if endpoint not in covered:
            problems.append(f"the collection does not cover {endpoint}")

    for name in ("local", "dev", "prod"):
        environment = json.loads((ROOT / f"postman/environments/{name}.postman_environment.json").read_text())
        keys = {value["key"] for value in environment["values"]}
        if not {"baseUrl", "apiKey"} <= keys:
            problems.append(f"environment {name}: needs baseUrl and apiKey")

    generated = subprocess.run(
        [sys.executable, str(ROOT / "postman/build_collection.py"), "--check"], capture_output=True, text=True
    )
    if generated.returncode != 0:
        problems.append(f"postman/build_collection.py --check: {generated.stderr.strip()}")
    fail_if(problems)


# Changelog.


def check_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    problems = []
    if "## [Unreleased]" not in text:
        problems.append("CHANGELOG.md needs an [Unreleased] section")
    for heading in re.findall(r"^## .*$", text, re.M):
        if heading != "## [Unreleased]" and not re.fullmatch(
            r"## \[\d+\.\d+\.\d+\S*\] - \d{4}-\d{2}-\d{2}", heading
        ):
            problems.append(f"CHANGELOG.md: heading {heading!r} is not '## [X.Y.Z] - YYYY-MM-DD'")

    # The release workflow finds each version's notes, and fails on a version without any. A released
    # copy of the current changelog shows both.
    released = text.replace("## [Unreleased]", "## [Unreleased]\n\n## [9.9.9] - 2099-01-01", 1)
    with tempfile.NamedTemporaryFile("w", suffix=".md") as copy:
        copy.write(released)
        copy.flush()
        for version, expect_notes in (("v9.9.9", True), ("v9.9.8", False)):
            section = subprocess.run(
                ["bash", str(ROOT / "infra/ci/changelog-section.sh"), version],
                capture_output=True,
                text=True,
                env={**os.environ, "CHANGELOG_FILE": copy.name},
            )
            found = section.returncode == 0 and bool(section.stdout.strip())
            if found != expect_notes:
                problems.append(
                    f"changelog-section.sh {version}: exit {section.returncode}, output {section.stdout!r}"
                )
    fail_if(problems)


CHECKS: dict[str, Callable[[], None]] = {
    "compose-schema": check_compose_schema,
    "compose-consistency": check_compose_consistency,
    "k8s-base": lambda: check_k8s("k8s/base"),
    "k8s-production": lambda: check_k8s("k8s/overlays/production"),
    "nats-values": check_nats_values,
    "terraform": check_terraform,
    "postman": check_postman,
    "changelog": check_changelog,
}


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "caddy-adapted":
        runner: Callable[[], None] = lambda: check_caddy_adapted(argv[1])  # noqa: E731
    elif len(argv) == 1 and argv[0] in CHECKS:
        runner = CHECKS[argv[0]]
    else:
        print(f"usage: deploy_checks.py {{{'|'.join(CHECKS)}}} | caddy-adapted CADDYFILE", file=sys.stderr)
        return 2

    try:
        runner()
    except CheckFailed as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
