"""Build one AsyncAPI 3.0 document for the whole bus from FastStream brokers.

Each service's broker contributes its subscribers (receive operations) and publishers (send operations).
FastStream 0.7.8 derives each payload schema from the handler's signature or the publisher's `schema`,
but its own generator documents one application at a time, without message headers or replies. This
module merges the brokers of every service into one channel per subject. It also adds the headers that
`bus.message_headers` sets, the reply of each request/reply handler (its return annotation), and the
JetStream stream that stores each subject, read from `bus.ALL_STREAMS`.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Sequence
from typing import Any

from faststream.nats import NatsBroker
from pydantic import BaseModel

from .bus import ALL_STREAMS, DAY, MSG_ID_HEADER, REQUEST_ID_HEADER, StreamSpec

SCHEMAS_REF = "#/components/schemas/"
TRACE_HEADERS: dict[str, Any] = {
    "traceparent": {"type": "string", "description": "W3C trace context, when tracing is on"},
    "tracestate": {"type": "string", "description": "W3C trace context, when tracing is on"},
}
REQUEST_ID: dict[str, Any] = {
    REQUEST_ID_HEADER: {"type": "string", "description": "id of the HTTP request that caused this message"}
}
MSG_ID: dict[str, Any] = {
    MSG_ID_HEADER: {
        "type": "string",
        "description": "JetStream de-duplication id, `<job_id>:<command or event>` (for example "
        "`<job_id>:enqueue`, `<job_id>:completed`, `<key_id>:key-revoked`); progress events and the event "
        "that puts a retried job back to `queued` have none",
    }
}
# Extra headers of a dead letter, set by the downloader when it gives up on a command.
DEAD_LETTER_HEADERS: dict[str, Any] = {
    "Nadzu-Error-Code": {"type": "string", "description": "the job's last error code"},
    "Nadzu-Attempts": {"type": "string", "description": "deliveries made before giving up"},
}
KIND_DESCRIPTIONS = {
    "cmd": "JetStream command: stored until one consumer replica acknowledges it",
    "ctl": "core NATS broadcast: every replica receives it, nothing is stored",
    "evt": "JetStream event: stored with bounded history, any number of subscribers",
    "dlq": "JetStream dead letter: kept for operators, nothing consumes it",
    "rpc": "core NATS request/reply, served by one replica of a queue group",
}


def subject_kind(subject: str) -> str:
    """Return the `<kind>` of a `<domain>.<kind>.<name>` subject."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[1] not in KIND_DESCRIPTIONS:
        raise ValueError(f"subject {subject!r} does not follow <domain>.<kind>.<name>")
    return parts[1]


def message_headers_schema(subject: str) -> dict[str, Any]:
    """JSON schema of the headers a message on `subject` carries (see `bus.message_headers`)."""
    kind = subject_kind(subject)
    properties: dict[str, Any] = {}
    if kind in ("cmd", "evt", "dlq"):
        properties.update(MSG_ID)
    if kind == "dlq":
        properties.update(DEAD_LETTER_HEADERS)
    properties.update(REQUEST_ID)
    properties.update(TRACE_HEADERS)
    return {"type": "object", "properties": properties}


def stream_of(address: str) -> StreamSpec | None:
    """Return the JetStream stream whose subjects cover `address`, if any."""
    for spec in ALL_STREAMS:
        for pattern in spec.subjects:
            if pattern.endswith(".>") and address.startswith(pattern[:-1]):
                return spec
            if pattern == address:
                return spec
    return None


def describe_stream(spec: StreamSpec) -> str:
    limits = [f"{spec.retention.value} retention", f"kept {spec.max_age_seconds / DAY:g} days"]
    if spec.max_msgs_per_subject > 0:
        limits.append(f"at most {spec.max_msgs_per_subject} messages per subject")
    return f"Stored in the JetStream stream `{spec.name}` ({', '.join(limits)})."


def _rewrite_refs(schema: Any) -> Any:
    """Point pydantic's local `#/$defs/X` references at `components/schemas`."""
    text = json.dumps(schema)
    return json.loads(text.replace('"#/$defs/', f'"{SCHEMAS_REF}'))


class _Document:
    """Channels, operations, messages and schemas collected from the brokers."""

    def __init__(self) -> None:
        self.channels: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.schemas: dict[str, Any] = {}
        # Channel keys of subscribers to `prefix.>` subjects, and each request/reply channel's reply.
        self.wildcards: dict[str, str] = {}
        self.replies: dict[str, dict[str, Any]] = {}

    def add_schema(self, schema: dict[str, Any]) -> str:
        """Store a payload schema and its definitions, and return the payload's name."""
        schema = _rewrite_refs(schema)
        for name, definition in schema.pop("$defs", {}).items():
            self._store(name, definition)
        name = schema["title"]
        self._store(name, schema)
        return str(name)

    def _store(self, name: str, schema: Any) -> None:
        existing = self.schemas.get(name)
        if existing is not None and existing != schema:
            raise ValueError(f"two different schemas are named {name!r}; rename one of the models")
        self.schemas[name] = schema

    def add_message(self, address: str, payload_name: str) -> str:
        """Register the message of `payload_name` on `address` and return its key in components."""
        kind = subject_kind(address)
        key = payload_name if kind != "dlq" else f"{payload_name}.deadLetter"
        if key not in self.messages:
            message: dict[str, Any] = {"name": key, "title": payload_name}
            description = self.schemas[payload_name].get("description")
            if description:
                message["summary"] = description.split("\n")[0]
            version = self.schemas[payload_name].get("properties", {}).get("v", {}).get("const")
            if version is not None:
                message["description"] = (
                    f"Payload schema version `v` {version}. Consumers ignore unknown fields and reject "
                    "unknown versions (docs/events.md has the compatibility rules)."
                )
            message["contentType"] = "application/json"
            message["headers"] = message_headers_schema(address)
            message["payload"] = {"$ref": SCHEMAS_REF + payload_name}
            self.messages[key] = message
        return key

    def channel(self, address: str) -> tuple[str, dict[str, Any]]:
        key = channel_key(address)
        if key not in self.channels:
            parameters = re.findall(r"\{(\w+)\}", address)
            description = KIND_DESCRIPTIONS[subject_kind(address)] + "."
            stream = stream_of(address)
            if stream is not None:
                description += " " + describe_stream(stream)
            channel: dict[str, Any] = {"address": address, "description": description, "messages": {}}
            if parameters:
                channel["parameters"] = {
                    name: {"description": f"the {name} the message is about"} for name in parameters
                }
            self.channels[key] = channel
        return key, self.channels[key]


def channel_key(address: str) -> str:
    return address.replace("{", "").replace("}", "")


def _reply_model(handler: Any) -> type[BaseModel] | None:
    """Return the pydantic model a handler returns, from its (possibly string) return annotation."""
    signature = inspect.signature(handler, eval_str=True)
    annotation = signature.return_annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _resolve_wildcards(document: _Document) -> None:
    """Merge a subscriber's `prefix.>` channel into the `prefix.{param}` channel that publishers use."""
    for wildcard, key in document.wildcards.items():
        prefix = wildcard[:-1]
        templates = [
            other
            for other, channel in document.channels.items()
            if other != key and "{" in (channel["address"] or "") and channel["address"].startswith(prefix)
        ]
        if len(templates) != 1:
            continue
        target = templates[0]
        source = document.channels.pop(key)
        for name in [name for name in document.operations if name.endswith(f".{key}")]:
            document.operations[name.removesuffix(key) + target] = document.operations.pop(name)
        document.channels[target]["messages"].update(source["messages"])
        for operation in document.operations.values():
            if operation["channel"]["$ref"] == f"#/channels/{key}":
                operation["channel"]["$ref"] = f"#/channels/{target}"
                operation["messages"] = [
                    {"$ref": ref["$ref"].replace(f"#/channels/{key}/", f"#/channels/{target}/")}
                    for ref in operation["messages"]
                ]


def _add_subscriber(document: _Document, service: str, subscriber: Any) -> None:
    """Add a receive operation, with the handler's reply when it returns a model, per subject.

    A subscriber without a handler is read by other code, so its payload type is unknown here. Such a
    subject needs a declaration in `nadzu_common.contracts`.
    """
    if not subscriber.calls:
        return
    for spec in subscriber.schema().values():
        address = spec.address
        payload = document.add_schema(spec.operation.message.payload)
        message = document.add_message(address, payload)
        key, channel = document.channel(address)
        channel["messages"][message] = {"$ref": f"#/components/messages/{message}"}
        if address.endswith(".>"):
            document.wildcards[address] = key

        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": spec.description or f"{service} receives {address}",
            "messages": [{"$ref": f"#/channels/{key}/messages/{message}"}],
            "x-service": service,
        }
        queue = spec.bindings.nats.queue if spec.bindings and spec.bindings.nats else None
        if queue:
            operation["bindings"] = {"nats": {"queue": queue, "bindingVersion": "0.1.0"}}

        for call in subscriber.calls:
            # NOTE: `_declared_call` is FastStream 0.7.8's private name for the decorated function.
            model = _reply_model(call.handler._declared_call)
            if model is not None:
                operation["reply"] = _add_reply(document, key, address, model)
                document.replies[key] = operation["reply"]
        document.operations[f"{service}.receive.{key}"] = operation


def _add_reply(document: _Document, key: str, address: str, model: type[BaseModel]) -> dict[str, Any]:
    """Add the reply channel of request/reply subject `address` and return the operation's `reply`."""
    payload = document.add_schema(model.model_json_schema(ref_template=SCHEMAS_REF + "{model}"))
    message = document.add_message(address, payload)
    reply_key = f"{key}.reply"
    document.channels[reply_key] = {
        "address": None,
        "description": f"The requester's inbox, named by the reply subject of a `{address}` request.",
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
    }
    return {
        "address": {"location": "$message.header#/reply_to", "description": "the inbox the request named"},
        "channel": {"$ref": f"#/channels/{reply_key}"},
        "messages": [{"$ref": f"#/channels/{reply_key}/messages/{message}"}],
    }


def _add_publisher(document: _Document, service: str, publisher: Any) -> None:
    for spec in publisher.schema().values():
        address = spec.address
        payload = document.add_schema(spec.operation.message.payload)
        message = document.add_message(address, payload)
        key, channel = document.channel(address)
        channel["messages"][message] = {"$ref": f"#/components/messages/{message}"}
        document.operations[f"{service}.send.{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": spec.description or f"{service} sends {address}",
            "messages": [{"$ref": f"#/channels/{key}/messages/{message}"}],
            "x-service": service,
        }


def build_asyncapi(
    services: Sequence[tuple[str, NatsBroker]],
    title: str,
    version: str,
    description: str,
    server_url: str,
) -> dict[str, Any]:
    """Build the document from `(service name, broker)` pairs. The brokers need not be connected."""
    document = _Document()
    for service, broker in services:
        for subscriber in broker.subscribers:
            if subscriber.specification.include_in_schema:
                _add_subscriber(document, service, subscriber)
        for publisher in broker.publishers:
            if publisher.specification.include_in_schema:
                _add_publisher(document, service, publisher)

    _resolve_wildcards(document)
    # A requester gets the reply that its responder's handler returns.
    for operation in document.operations.values():
        key = operation["channel"]["$ref"].removeprefix("#/channels/")
        if operation["action"] == "send" and key in document.replies:
            operation["reply"] = document.replies[key]

    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": version, "description": description},
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": server_url.removeprefix("nats://"),
                "protocol": "nats",
                "description": "NATS_URL of a local run",
            }
        },
        "channels": dict(sorted(document.channels.items())),
        "operations": dict(sorted(document.operations.items())),
        "components": {
            "messages": dict(sorted(document.messages.items())),
            "schemas": dict(sorted(document.schemas.items())),
        },
    }
