"""`GET <mount>/api/client-analysis` (hourly client rows) and `GET <mount>/api/recent-requests` (the ring)."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .api_errors import store_reader
from .envelope import api_endpoint, fail, now_of, ok
from .params import TIME_PARAMS, QueryParams, parse_params
from .store.queries_clients import CLIENT_FILTER_COLUMNS, client_rows

__all__ = ["CLIENT_SORTS", "clients_routes", "rank_clients", "recent_matches"]

CLIENT_SORTS = ("requests", "errors", "error_rate", "avg_latency", "bytes", "client")
CLIENT_PARAMS = frozenset({"start_time", "end_time", "duration", *CLIENT_FILTER_COLUMNS, "limit", "sort"})
RECENT_PARAMS = frozenset(
    {
        "start_time",
        "end_time",
        "duration",
        "protocol",
        "method",
        "endpoint",
        "status_code",
        "workspace_id",
        "environment",
        "test_run",
        "client",
        "limit",
    }
)
TOP_ENDPOINTS = 10
_SUMMED = ("request_count", "error_count", "latency_sum", "latency_count", "bytes_sent", "bytes_received")
_SORT_KEYS = {
    "requests": lambda c: (-c["request_count"], c["key"]),
    "errors": lambda c: (-c["error_count"], c["key"]),
    "error_rate": lambda c: (-c["error_rate"], c["key"]),
    "avg_latency": lambda c: (-(c["avg_latency_ms"] or 0.0), c["key"]),
    "bytes": lambda c: (-(c["bytes_sent"] + c["bytes_received"]), c["key"]),
    "client": lambda c: (c["key"],),
}


def _new_acc() -> dict[str, Any]:
    return {
        "request_count": 0,
        "error_count": 0,
        "latency_sum": 0.0,
        "latency_count": 0,
        "bytes_sent": 0,
        "bytes_received": 0,
        "endpoints": {},
        "agents": {},
        "others": set(),
        "first": None,
        "last": None,
    }


def _add(acc: dict[str, Any], row: dict[str, Any], other: str) -> None:
    for name in _SUMMED:
        acc[name] += row[name] or 0
    try:
        counts = json.loads(row["endpoint_counts"] or "{}")
    except ValueError:
        counts = {}
    for endpoint, n in counts.items():
        if isinstance(n, int):
            acc["endpoints"][endpoint] = acc["endpoints"].get(endpoint, 0) + n
    agent = (row["user_agent"], row["user_agent_family"], row["user_agent_version"])
    acc["agents"][agent] = acc["agents"].get(agent, 0) + (row["request_count"] or 0)
    acc["others"].add(other)
    ts = row["timestamp"]
    acc["first"] = ts if acc["first"] is None else min(acc["first"], ts)
    acc["last"] = ts if acc["last"] is None else max(acc["last"], ts)


def _finish(key: str, acc: dict[str, Any]) -> dict[str, Any]:
    requests = acc["request_count"]
    lat_n = acc["latency_count"]
    agent = max(acc["agents"].items(), key=lambda kv: (kv[1], kv[0]))[0] if acc["agents"] else ("", "", "")
    top = sorted(acc["endpoints"].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ENDPOINTS]
    return {
        "key": key,
        "request_count": requests,
        "error_count": acc["error_count"],
        "error_rate": round(100.0 * acc["error_count"] / requests, 4) if requests else 0.0,
        "avg_latency_ms": round(acc["latency_sum"] / lat_n, 4) if lat_n else None,
        "bytes_sent": acc["bytes_sent"],
        "bytes_received": acc["bytes_received"],
        "user_agent": agent[0],
        "user_agent_family": agent[1],
        "user_agent_version": agent[2],
        "user_agent_count": len(acc["agents"]),
        "top_endpoints": [{"endpoint": e, "count": n} for e, n in top],
        "first_seen": acc["first"],
        "last_seen": acc["last"],
        "_others": sorted(acc["others"]),
    }


def rank_clients(rows: list[dict[str, Any]], sort: str, limit: int) -> dict[str, Any]:
    """Fold hourly rows into per-client and per-test-run figures, sorted and limited."""
    clients: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    for row in rows:
        _add(clients.setdefault(row["client_ip"], _new_acc()), row, row["test_run"])
        _add(runs.setdefault(row["test_run"], _new_acc()), row, row["client_ip"])
    key = _SORT_KEYS[sort]
    client_list = sorted((_finish(k, a) for k, a in clients.items()), key=key)
    run_list = sorted((_finish(k, a) for k, a in runs.items()), key=key)
    for c in client_list:
        c["client"] = c.pop("key")
        c["test_runs"] = c.pop("_others")
    for r in run_list:
        r["test_run"] = r.pop("key")
        r["client_count"] = len(r.pop("_others"))
    return {
        "total_clients": len(client_list),
        "total_test_runs": len(run_list),
        "clients": client_list[:limit],
        "test_runs": run_list[:limit],
    }


@api_endpoint
async def client_analysis(request: Request) -> Response:
    """Per client and per test run: requests, errors, latency, bytes, user agent, top endpoints."""
    runtime = request.app.state.runtime
    p = parse_params(
        request.query_params,
        allowed=CLIENT_PARAMS,
        now=now_of(request),
        config=runtime.config,
        sorts=CLIENT_SORTS,
    )
    db = store_reader(request)
    if db is None:
        return fail(503, "analytics store is not open")
    rows = await client_rows(db, p)
    data = rank_clients(rows, p.sort or CLIENT_SORTS[0], p.limit)
    return ok({"start_time": p.start - p.start % 3600, "end_time": p.end, "sort": p.sort, **data})


def recent_matches(entry: Any, p: QueryParams, windowed: bool) -> bool:
    """True when one recent request passes the filters of ``p`` (and its window, if one was asked)."""
    if windowed and not (p.start <= entry.timestamp < p.end):
        return False
    if p.protocol is not None and entry.protocol not in p.protocol:
        return False
    if p.method is not None and entry.method not in p.method:
        return False
    if p.endpoint is not None:
        if p.endpoint_is_glob:
            if not fnmatch.fnmatchcase(entry.endpoint, p.endpoint.replace("[", "[[]").replace("?", "[?]")):
                return False
        elif entry.endpoint != p.endpoint:
            return False
    if p.status_code is not None and not p.status_code.matches(entry.status_code):
        return False
    for name, value in (
        ("workspace_id", entry.workspace_id),
        ("environment", entry.environment),
        ("test_run", entry.test_run),
        ("client", entry.client_id),
    ):
        wanted = getattr(p, name)
        if wanted is not None and value != wanted:
            return False
    return True


@api_endpoint
async def recent_requests(request: Request) -> Response:
    """The recorder's ring of recent requests, newest first, filtered."""
    runtime = request.app.state.runtime
    p = parse_params(request.query_params, allowed=RECENT_PARAMS, now=now_of(request), config=runtime.config)
    # The ring is recent by nature: only filter by time when the caller asked for a window.
    windowed = any(name in request.query_params for name in TIME_PARAMS)
    ring = runtime.recorder.recent(max(runtime.config.recent_requests, 1))
    items = []
    for entry in ring:
        if recent_matches(entry, p, windowed):
            item = asdict(entry)
            item["client"] = item.pop("client_id")
            items.append(item)
            if len(items) >= p.limit:
                break
    return ok({"capacity": runtime.config.recent_requests, "count": len(items), "requests": items})


def clients_routes() -> list[BaseRoute]:
    """The client routes, mounted under `<mount>/api`."""
    return [
        Route("/client-analysis", client_analysis, methods=["GET"], name="client_analysis"),
        Route("/recent-requests", recent_requests, methods=["GET"], name="recent_requests"),
    ]
