"""JSON Schemas (2020-12, as OpenAPI 3.1 uses) of the envelope and of each route's `data`."""

from __future__ import annotations

from typing import Any

__all__ = ["DATA_SCHEMAS", "ENVELOPE", "ERROR_ENVELOPE", "STREAM_MESSAGES"]

INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
STR: dict[str, Any] = {"type": "string"}
BOOL: dict[str, Any] = {"type": "boolean"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object with these properties (all required unless ``required`` says otherwise)."""
    return {"type": "object", "properties": props, "required": list(props) if required is None else required}


def arr(items: dict[str, Any]) -> dict[str, Any]:
    """An array of ``items``."""
    return {"type": "array", "items": items}


NNUM = nullable(NUM)
# `meta` appears only when a percentile route widened part of its window (docs/storage.md).
_META = obj(
    {"percentile_resolution": arr(obj({"start": INT, "end": INT, "seconds": INT}))}, ["percentile_resolution"]
)
ENVELOPE = obj(
    {
        "success": BOOL,
        "data": {},
        "error": nullable(STR),
        "timestamp": {**STR, "format": "date-time"},
        "meta": _META,
    },
    ["success", "data", "error", "timestamp"],
)
ERROR_ENVELOPE = obj(
    {
        "success": {"const": False},
        "data": {"type": "null"},
        "error": STR,
        "timestamp": {**STR, "format": "date-time"},
    }
)

_LATENCY = {"avg_latency_ms": NNUM, "p50_latency_ms": NNUM, "p95_latency_ms": NNUM, "p99_latency_ms": NNUM}
_TOP_ENDPOINT = obj(
    {
        "endpoint": STR,
        "method": STR,
        "protocol": STR,
        "request_count": INT,
        "error_count": INT,
        "error_rate": NUM,
        **_LATENCY,
        "bytes_sent": INT,
        "bytes_received": INT,
    },
    ["endpoint", "method", "protocol", "request_count", "error_count", "error_rate"],
)
_PROTOCOL = obj(
    {
        "protocol": STR,
        "request_count": INT,
        "error_count": INT,
        "error_rate": NUM,
        "avg_latency_ms": NNUM,
        "share": NUM,
    },
    ["protocol", "request_count", "error_count"],
)
_POINT = obj({"timestamp": INT, "value": INT}, ["timestamp", "value"])
_LATENCY_POINT = obj(
    {"timestamp": INT, "p50": NNUM, "p95": NNUM, "p99": NNUM, "avg": NNUM, "min": NNUM, "max": NNUM},
    ["timestamp", "p50", "p95", "p99", "avg", "min", "max"],
)
_EVENT = obj(
    {
        "id": INT,
        "timestamp": NUM,
        "instance": STR,
        "source": STR,
        "protocol": STR,
        "method": STR,
        "endpoint": STR,
        "path": STR,
        "status_code": INT,
        "error_type": STR,
        "error_category": STR,
        "error_message": STR,
        "request_id": STR,
        "trace_id": STR,
        "span_id": STR,
        "client": STR,
        "user_agent": STR,
        "workspace_id": STR,
        "environment": STR,
        "test_run": STR,
        "fault_injected": BOOL,
    }
)
_COUNTED_ENDPOINT = obj({"endpoint": STR, "count": INT})
_CLIENT_FIGURES = {
    "request_count": INT,
    "error_count": INT,
    "error_rate": NUM,
    "avg_latency_ms": NNUM,
    "bytes_sent": INT,
    "bytes_received": INT,
    "user_agent": STR,
    "user_agent_family": STR,
    "user_agent_version": STR,
    "user_agent_count": INT,
    "top_endpoints": arr(_COUNTED_ENDPOINT),
    "first_seen": INT,
    "last_seen": INT,
}
_RECENT = obj(
    {
        "timestamp": NUM,
        "protocol": STR,
        "method": STR,
        "path": STR,
        "endpoint": STR,
        "status_code": INT,
        "duration_ms": NUM,
        "ttfb_ms": NUM,
        "bytes_sent": INT,
        "bytes_received": INT,
        "client": STR,
        "user_agent": STR,
        "test_run": STR,
        "workspace_id": STR,
        "environment": STR,
        "mock_route_id": STR,
        "injected_latency_ms": NUM,
        "fault_injected": BOOL,
        "trace_id": STR,
    }
)
_CELL = obj(
    {
        "day_of_week": {"type": "integer", "minimum": 0, "maximum": 6},
        "hour": {"type": "integer", "minimum": 0, "maximum": 23},
        "request_count": INT,
        "error_count": INT,
        "avg_latency_ms": NNUM,
    }
)

DATA_SCHEMAS: dict[str, dict[str, Any]] = {
    "overview": obj(
        {
            "total_requests": INT,
            "total_errors": INT,
            "error_rate": NUM,
            **_LATENCY,
            "requests_per_second": NUM,
            "total_bytes_sent": INT,
            "total_bytes_received": INT,
            "active_connections": INT,
            "unique_clients": nullable(INT),
            "top_protocols": arr({"type": "object"}),
            "top_endpoints": arr(_TOP_ENDPOINT),
            "dropped_events": INT,
        }
    ),
    "requests": arr(obj({"label": STR, "total": INT, "data": arr(_POINT)}, ["label", "data"])),
    "latency": {"anyOf": [arr(_LATENCY_POINT), arr(obj({"label": STR, "data": arr(_LATENCY_POINT)}))]},
    "top_endpoints": arr(_TOP_ENDPOINT),
    "protocol_breakdown": arr(_PROTOCOL),
    "status_codes": obj(
        {
            "total": INT,
            "codes": arr(obj({"status_code": INT, "count": INT, "share": NUM})),
            "classes": arr(
                obj({"class": {"type": "string", "pattern": "^[1-5]xx$"}, "count": INT, "share": NUM})
            ),
        }
    ),
    "status": {"type": "object"},
    "sources": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    "errors": obj(
        {
            "start_time": INT,
            "end_time": INT,
            "total_events": INT,
            "by_category": arr(obj({"error_category": STR, "count": INT})),
            "summary": arr(
                obj(
                    {
                        "error_category": STR,
                        "error_type": STR,
                        "count": INT,
                        "endpoints": arr(_COUNTED_ENDPOINT),
                        "endpoint_count": INT,
                        "last_occurrence": NUM,
                    }
                )
            ),
            "events": arr(_EVENT),
            "pagination": obj({"limit": INT, "offset": INT, "total": INT, "next_offset": nullable(INT)}),
            "sampled_out": INT,
        }
    ),
    "top_errors": obj(
        {
            "start_time": INT,
            "end_time": INT,
            "total_events": INT,
            "top_errors": arr(
                obj(
                    {
                        "endpoint": STR,
                        "method": STR,
                        "protocol": STR,
                        "status_code": INT,
                        "error_type": STR,
                        "error_category": STR,
                        "count": INT,
                        "last_occurrence": NUM,
                        "first_occurrence": NUM,
                        "fault_injected_count": INT,
                        "share": NUM,
                    }
                )
            ),
        }
    ),
    "traffic_patterns": obj(
        {
            "days": INT,
            "tz": STR,
            "start_time": INT,
            "end_time": INT,
            "day_of_week_start": {"const": "monday"},
            "total_requests": INT,
            "total_errors": INT,
            "peak": nullable(obj({"day_of_week": INT, "hour": INT})),
            "cells": {**arr(_CELL), "minItems": 168, "maxItems": 168},
        }
    ),
    "client_analysis": obj(
        {
            "start_time": INT,
            "end_time": INT,
            "sort": STR,
            "total_clients": INT,
            "total_test_runs": INT,
            "clients": arr(obj({"client": STR, **_CLIENT_FIGURES, "test_runs": arr(STR)})),
            "test_runs": arr(obj({"test_run": STR, **_CLIENT_FIGURES, "client_count": INT})),
        }
    ),
    "recent_requests": obj({"capacity": INT, "count": INT, "requests": arr(_RECENT)}),
    "deleted": obj(
        {
            "deleted": {"type": "object", "additionalProperties": INT},
            "total": INT,
            # retention/run only: rows rewritten without histograms past the horizons, per table
            "slimmed": {"type": "object", "additionalProperties": INT},
        },
        ["deleted", "total"],
    ),
}

STREAM_MESSAGES: dict[str, Any] = {
    "description": (
        "WebSocket. Server -> client every interval_seconds (default 1): an overview message. "
        "Client -> server at any time: a JSON config {interval_seconds (0.1-3600), duration_seconds "
        "(default 3600), any overview filter}; null removes a key; it applies from the next message. "
        "A bad config gets an error message and the socket stays open. With auth on and no "
        "credentials the socket is closed with code 4401; past the subscriber limit with 1013."
    ),
    "server_messages": {
        "overview": obj(
            {
                "type": {"const": "overview"},
                "timestamp": STR,
                "data": DATA_SCHEMAS["overview"],
                "delta": {"type": "object", "additionalProperties": NUM},
                "config": {"type": "object"},
                "dropped": INT,
            }
        ),
        "error": obj({"type": {"const": "error"}, "error": STR}),
    },
}
