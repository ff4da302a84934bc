"""What each dashboard page shows: query-layer results shaped into cards, charts and tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .charts import Series, bar_chart, heatmap, line_chart
from .pagesource import QuerySource, StoreUnavailableError
from .params import ParamError, QueryParams
from .sources_api import list_sources

__all__ = [
    "ENDPOINT_SORTS",
    "GROUP_BYS",
    "Card",
    "StoreUnavailableError",
    "build_cards",
    "clients_page",
    "endpoint_page",
    "endpoints_page",
    "errors_page",
    "level_of",
    "no_data",
    "overview_page",
    "requests_page",
]

CLIENT_FILTERS = ("protocol", "workspace_id", "environment", "test_run", "instance", "client")  # client rows
GROUP_BYS = ("protocol", "method", "status_class", "endpoint", "workspace_id", "environment", "test_run")
ENDPOINT_SORTS = ("requests", "errors", "error_rate", "avg", "p95", "p99", "endpoint")
# Endpoints table: (row key, header, numeric, sort name or None).
ENDPOINT_COLUMNS = (
    ("endpoint", "Endpoint", False, "endpoint"),
    ("protocol", "Protocol", False, None),
    ("request_count", "Requests", True, "requests"),
    ("error_count", "Errors", True, "errors"),
    ("error_rate", "Error rate", True, "error_rate"),
    ("avg_latency_ms", "Avg", True, "avg"),
    ("p95_latency_ms", "p95", True, "p95"),
    ("p99_latency_ms", "p99", True, "p99"),
)
# (good below, warning below) per metric; above the second is bad. Issue 7's thresholds.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "error_rate": (1.0, 5.0),
    "avg_latency_ms": (50.0, 200.0),
    "p95_latency_ms": (100.0, 500.0),
}
HEATMAP_DAYS = 30


@dataclass(frozen=True, slots=True)
class Card:
    """One stat card: its label, the overview key it shows, value, unit and colour level."""

    label: str
    metric: str
    value: float | None
    unit: str = ""
    level: str = ""
    hint: str = ""
    thresholds: str = ""  # "good,warn" for live.js to recolour the card on updates


def level_of(metric: str, value: float | None) -> str:
    """`good`, `warn` or `bad` by the metric's thresholds; '' when it has none or no value."""
    limits = THRESHOLDS.get(metric)
    if limits is None or value is None:
        return ""
    good, warn = limits
    return "good" if value < good else "warn" if value < warn else "bad"


def build_cards(ov: Mapping[str, Any]) -> list[Card]:
    """The overview's eight cards, coloured by threshold."""
    spec = (
        ("Requests", "total_requests", ""),
        ("Requests / s", "requests_per_second", "req/s"),
        ("Error rate", "error_rate", "%"),
        ("Avg latency", "avg_latency_ms", "ms"),
        ("p95 latency", "p95_latency_ms", "ms"),
        ("p99 latency", "p99_latency_ms", "ms"),
        ("Active connections", "active_connections", ""),
        ("Unique clients", "unique_clients", ""),
    )
    has = bool(ov.get("total_requests"))
    cards = []
    for label, key, unit in spec:
        value = ov.get(key)
        if not has and key.endswith("_ms"):
            value = None  # no requests: a latency of 0 would be a lie
        limits = THRESHOLDS.get(key)
        hint = "not counted under these filters" if has and value is None and key == "unique_clients" else ""
        cards.append(
            Card(
                label,
                key,
                value,
                unit,
                level_of(key, value),
                hint=hint,
                thresholds=",".join(f"{v:g}" for v in limits) if limits else "",
            )
        )
    return cards


MAX_SERIES = 6  # colours in the palette; the rest are summed into one "other" line


def _series_from(rows: Sequence[Mapping[str, Any]]) -> list[Series]:
    """API time series [{label, data: [{timestamp, value}]}] (busiest first) to at most 6 chart series."""
    series = [Series(str(s["label"]), [(float(p["timestamp"]), p["value"]) for p in s["data"]]) for s in rows]
    if len(series) <= MAX_SERIES:
        return series
    keep, rest = series[: MAX_SERIES - 1], series[MAX_SERIES - 1 :]
    sums: dict[float, float] = {}
    for s in rest:
        for ts, value in s.points:
            sums[ts] = sums.get(ts, 0.0) + (value or 0.0)
    return [*keep, Series(f"{len(rest)} others", sorted(sums.items()))]


def _latency_series(rows: Sequence[Mapping[str, Any]]) -> list[Series]:
    """Latency buckets [{timestamp, p50, p95, p99, avg}] to four chart series."""
    return [
        Series(key, [(float(r["timestamp"]), r.get(key)) for r in rows])
        for key in ("p50", "p95", "p99", "avg")
    ]


def _status_items(rows: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, float]], list[str]]:
    items = [(str(r["status_code"]), float(r["count"])) for r in rows]
    classes = [f"s{str(r['status_code'])[0]}xx" for r in rows]
    return items, classes


async def no_data(runtime: Any, qp: QueryParams, filters: Mapping[str, str]) -> dict[str, Any]:
    """For pages that show no analytics (login)."""
    return {}


async def overview_page(runtime: Any, qp: QueryParams, filters: Mapping[str, str]) -> dict[str, Any]:
    """Cards, request/latency charts, status codes, protocols, top endpoints, errors, heatmap."""
    src = _source(runtime)
    group_by = qp.group_by or "protocol"
    ov = await src.overview(qp)
    req = await src.request_series(qp, group_by)
    lat = await src.latency_series(qp)
    percentile_note = await src.percentile_note(qp)
    status_items, status_classes = _status_items(await src.status_codes(qp))
    protocols = ov.get("top_protocols") or []  # the overview already ranks both; no second read
    top = ov.get("top_endpoints") or []
    events = await src.error_events(qp, 10)
    cells = await src.heatmap(qp, HEATMAP_DAYS)
    rate_unit = "req/min" if qp.granularity == "minute" else f"req/{qp.granularity}"
    return {
        "overview": ov,
        "cards": build_cards(ov),
        "has_traffic": bool(ov.get("total_requests")),
        "dropped": _dropped_text(ov.get("dropped_events")),
        "group_by": group_by,
        "group_bys": GROUP_BYS,
        "group_label": group_by.replace("_", " "),
        "request_chart": line_chart(
            _series_from(req), title="Requests per bucket", unit=rate_unit, y_label="requests", area=False
        ),
        "latency_chart": line_chart(
            _latency_series(lat), title="Latency percentiles", unit="ms", y_label="latency"
        ),
        "percentile_note": percentile_note,
        "status_chart": bar_chart(status_items, title="Status codes", classes=status_classes),
        "protocol_chart": bar_chart(
            [(p["protocol"], float(p["request_count"])) for p in protocols], title="Requests by protocol"
        ),
        "top_endpoints": top,
        "error_events": events,
        "heat_days": HEATMAP_DAYS,
        "heatmap_chart": heatmap(cells),
        # Each source's freshness, failures and last error (flush for the middleware, ingest for
        # Prometheus): the same figures as GET /api/sources.
        "sources": list_sources(runtime, runtime.clock()),
    }


async def endpoints_page(runtime: Any, qp: QueryParams, filters: Mapping[str, str]) -> dict[str, Any]:
    """Every endpoint in the window, sorted by the chosen column (figures descending by default)."""
    sort = qp.sort or "requests"
    order = filters.get("order") or ("asc" if sort == "endpoint" else "desc")
    if order not in ("asc", "desc"):
        raise ParamError("order", "expected asc or desc")
    limit = qp.limit if "limit" in filters else runtime.config.max_query_results
    # the query layer ranks descending; name order and ascending order are arranged here
    rows = await _source(runtime).top_endpoints(qp, limit, "requests" if sort == "endpoint" else sort)
    if sort == "endpoint":
        rows.sort(key=lambda r: (r["endpoint"], r["method"], r["protocol"]))
    if (order == "asc") != (sort == "endpoint"):
        rows.reverse()
    base = {k: v for k, v in filters.items() if k not in ("sort", "order")}
    links = {}
    for key, _, _, sort_name in ENDPOINT_COLUMNS:
        if sort_name is None:
            continue
        default = "asc" if sort_name == "endpoint" else "desc"
        flip = {"asc": "desc", "desc": "asc"}[order] if sort_name == sort else default
        links[key] = urlencode({**base, "sort": sort_name, "order": flip})
    return {
        "endpoints": rows,
        "sort": sort,
        "order": order,
        "columns": ENDPOINT_COLUMNS,
        "sort_links": links,
        "has_traffic": bool(rows),
    }


async def endpoint_page(runtime: Any, qp: QueryParams, filters: Mapping[str, str]) -> dict[str, Any]:
    """One endpoint: its cards, series by status class, latency, status codes, clients, errors."""
    src = _source(runtime)
    ov = await src.overview(qp)
    req = await src.request_series(qp, "status_class")
    lat = await src.latency_series(qp)
    percentile_note = await src.percentile_note(qp)
    status_items, status_classes = _status_items(await src.status_codes(qp))
    clients = await src.endpoint_clients(qp, 10)
    events = await src.error_events(qp, 20)
    return {
        "cards": [  # connections are host-wide; clients per endpoint are listed in their own panel
            c for c in build_cards(ov) if c.metric not in ("active_connections", "unique_clients")
        ],
        "has_traffic": bool(ov.get("total_requests")),
        "method": filters.get("method", ""),
        "endpoint": filters.get("endpoint", ""),
        "request_chart": line_chart(_series_from(req), title="Requests by status class", y_label="requests"),
        "latency_chart": line_chart(
            _latency_series(lat), title="Latency percentiles", unit="ms", y_label="latency"
        ),
        "percentile_note": percentile_note,
        "status_chart": bar_chart(status_items, title="Status codes", classes=status_classes),
        "clients": clients,
        # Client rows have no status or source: say so rather than ignore those filters silently.
        "clients_unfiltered": [name for name in ("status_code", "source") if name in filters],
        "error_events": events,
    }


async def errors_page(runtime: Any, qp: QueryParams, filters: Mapping[str, str]) -> dict[str, Any]:
    """The error summary by type and the recent error events."""
    src = _source(runtime)
    summary = await src.error_summary(qp)
    total = sum(s["count"] for s in summary) or 1
    for s in summary:
        s.setdefault("share", s["count"] / total * 100)
    return {"error_summary": summary, "error_events": await src.error_events(qp, qp.limit)}


async def clients_page(runtime: Any, qp: QueryParams, filters: Mapping[str, str]) -> dict[str, Any]:
    """Clients and test runs in the window, busiest first."""
    data = await _source(runtime).clients(qp, qp.limit)
    return {"clients": data["clients"], "test_runs": data["test_runs"], "has_traffic": bool(data["clients"])}


async def requests_page(runtime: Any, qp: QueryParams, filters: Mapping[str, str]) -> dict[str, Any]:
    """The recent-requests ring, newest first, filtered."""
    return {"recent": await _source(runtime).recent_requests(qp, qp.limit)}


def _dropped_text(dropped: Any) -> str:
    """A notice when the recorder had to drop or fold data, so the numbers are read right."""
    if not dropped:
        return ""
    if isinstance(dropped, Mapping):
        parts = [f"{k.replace('_', ' ')}: {v:,}" for k, v in dropped.items() if v]
        return ("Some data was not kept (" + "; ".join(parts) + ").") if parts else ""
    return f"{int(dropped):,} events were not kept (buffer limits); totals may be low."


def _source(runtime: Any) -> QuerySource:
    """The data source the pages read: the query layer over `runtime.store`."""
    return QuerySource(runtime)
