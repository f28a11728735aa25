"""Validating what arrives over MQTT against the contract (config/schemas/*.json) and turning it
into typed rows. A message is untrusted bytes: every failure becomes a `DeadLetter` with a reason,
never an exception out of `parse_message`.

A batch whose envelope is valid but where some events are not keeps its valid events: the bad
ones are dead-lettered one by one (their seq then shows as a gap, explained by the dead letter).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import orjson
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "config" / "schemas"
MAX_PAYLOAD = 1024 * 1024  # a gateway sends <= 64 KiB per message
MAX_BIGINT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: str
    seq: int
    type: str
    store: str
    gateway: str
    tag: str
    zone: str
    start: float
    end: float
    duration_s: float
    clock_synced: bool
    offer_id: str | None
    catalogue_version: int | None
    payload_ref: str | None
    raw: bytes  # the event as JSON (stored as JSONB)


@dataclass(frozen=True, slots=True)
class StatusRow:
    store: str
    gateway: str
    online: bool
    time: float
    last_acked_seq: int
    backlog: int
    drops: int  # summed over types
    dead_letter: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    reason: str
    payload: bytes
    store: str | None = None
    gateway: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    topic: str = ""
    events: tuple[EventRow, ...] = ()
    status: StatusRow | None = None
    dead: tuple[DeadLetter, ...] = ()


@lru_cache(maxsize=4)
def validator(name: str) -> jsonschema.protocols.Validator:
    reg: Registry[Any] = Registry()
    for p in SCHEMA_DIR.glob("*.schema.json"):
        reg = reg.with_resource(p.name, Resource.from_contents(json.loads(p.read_text())))
    schema = json.loads((SCHEMA_DIR / name).read_text())
    v: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(schema, registry=reg)
    return v


@lru_cache(maxsize=4)
def fast_validator(name: str) -> jsonschema_rs.Validator:
    """The same schema compiled by jsonschema-rs: ~100x faster than `jsonschema`, which is then
    only asked (for the reason) when a message fails."""

    def retrieve(uri: str) -> Any:
        return json.loads((SCHEMA_DIR / uri.rsplit("/", 1)[-1]).read_text())

    schema = json.loads((SCHEMA_DIR / name).read_text())
    return jsonschema_rs.validator_for(schema, retriever=retrieve)


def topic_parts(topic: str) -> tuple[str, str, str] | None:
    """shelfgate/v1/<store>/<gateway>/<kind> -> (store, gateway, kind); prefixes may be longer."""
    parts = topic.split("/")
    if len(parts) < 3:
        return None
    return parts[-3], parts[-2], parts[-1]


def parse_message(topic: str, payload: bytes) -> Parsed:
    return replace(_parse(topic, payload), topic=topic)


def _parse(topic: str, payload: bytes) -> Parsed:
    where = topic_parts(topic)
    if where is None or where[2] not in ("events", "status"):
        return _dead(topic, payload, "unexpected topic")
    if len(payload) > MAX_PAYLOAD:
        return _dead(topic, payload, f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        return _dead(topic, payload, f"not JSON: {e}")
    store, gateway, kind = where
    if not isinstance(body, dict):
        return _dead(topic, payload, "not a JSON object")
    if body.get("store") != store or body.get("gateway") != gateway:
        return _dead(topic, payload, "store/gateway in the message differ from the topic")
    if kind == "status":
        return _parse_status(topic, payload, body)
    return _parse_events(topic, payload, body)


def _dead(topic: str, payload: bytes, reason: str, **where: Any) -> Parsed:
    return Parsed(dead=(DeadLetter(topic, reason, payload, **where),))


def _error_text(e: jsonschema.ValidationError) -> str:
    path = "/".join(str(p) for p in e.absolute_path) or "(message)"
    return f"schema: {path}: {e.message[:200]}"


def _parse_status(topic: str, payload: bytes, body: dict[str, Any]) -> Parsed:
    err = None
    if not fast_validator("status.schema.json").is_valid(body):
        err = jsonschema.exceptions.best_match(validator("status.schema.json").iter_errors(body))
    if err is not None:
        return _dead(topic, payload, _error_text(err), store=body["store"], gateway=body["gateway"])
    drops = body.get("drops") or {}
    return Parsed(
        status=StatusRow(
            store=body["store"],
            gateway=body["gateway"],
            online=body["online"],
            time=float(body["time"]),
            last_acked_seq=min(int(body["last_acked_seq"]), MAX_BIGINT),
            backlog=min(int(body["backlog"]), MAX_BIGINT),
            drops=min(sum(int(v) for v in drops.values()), MAX_BIGINT),
            dead_letter=min(int(body.get("dead_letter") or 0), MAX_BIGINT),
            raw=payload,
        )
    )


def _parse_events(topic: str, payload: bytes, body: dict[str, Any]) -> Parsed:
    bad_events: dict[int, str] = {}
    fast_ok = fast_validator("events-message.schema.json").is_valid(body)
    for err in () if fast_ok else validator("events-message.schema.json").iter_errors(body):
        path = list(err.absolute_path)
        if len(path) >= 2 and path[0] == "events" and isinstance(path[1], int):
            bad_events.setdefault(path[1], _error_text(err))
        else:
            return _dead(
                topic, payload, _error_text(err), store=body["store"], gateway=body["gateway"]
            )
    rows: list[EventRow] = []
    dead: list[DeadLetter] = []
    for i, ev in enumerate(body["events"]):
        reason = bad_events.get(i) or _event_mismatch(ev, body)
        if reason is not None:
            seq = ev.get("seq") if isinstance(ev, dict) else None
            dead.append(
                DeadLetter(
                    topic,
                    reason,
                    orjson.dumps(ev),
                    body["store"],
                    body["gateway"],
                    seq if isinstance(seq, int) and 0 < seq <= MAX_BIGINT else None,
                )
            )
            continue
        rows.append(_event_row(ev))
    return Parsed(events=tuple(rows), dead=tuple(dead))


def _event_mismatch(ev: dict[str, Any], body: dict[str, Any]) -> str | None:
    """What the schema cannot say: the event belongs to the message's gateway, fits a bigint."""
    if ev["store"] != body["store"] or ev["gateway"] != body["gateway"]:
        return "event's store/gateway differ from the message's"
    if ev["seq"] > MAX_BIGINT:
        return "seq out of range"
    cv = ev.get("catalogue_version")
    if cv is not None and not -(2**31) <= cv < 2**31:
        return "catalogue_version out of range"
    return None


def _event_row(ev: dict[str, Any]) -> EventRow:
    return EventRow(
        event_id=ev["event_id"],
        seq=ev["seq"],
        type=ev["type"],
        store=ev["store"],
        gateway=ev["gateway"],
        tag=ev["tag"],
        zone=ev["zone"],
        start=float(ev["start"]),
        end=float(ev["end"]),
        duration_s=float(ev["duration_s"]),
        clock_synced=ev["clock_synced"],
        offer_id=ev.get("offer_id"),
        catalogue_version=ev.get("catalogue_version"),
        payload_ref=ev.get("payload_ref"),
        raw=orjson.dumps(ev),
    )
