"""What each dashboard page shows: query-layer results shaped into cards, charts and tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .charts import Series, bar_chart, heatmap, line_chart
from .params import QueryParams

__all__ = [
    "ENDPOINT_SORTS",
    "GROUP_BYS",
    "Card",
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

GROUP_BYS = ("protocol", "method", "status_class", "endpoint", "workspace_id", "environment", "test_run")
ENDPOINT_SORTS = (
    "request_count",
    "error_count",
    "error_rate",
    "avg_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "endpoint",
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
        cards.append(
            Card(
                label,
                key,
                value,
                unit,
                level_of(key, value),
                thresholds=",".join(f"{v:g}" for v in limits) if limits else "",
            )
        )
    return cards


def _series_from(rows: Sequence[Mapping[str, Any]]) -> list[Series]:
    """API time series [{label, data: [{timestamp, value}]}] to chart series."""
    return [Series(str(s["label"]), [(float(p["timestamp"]), p["value"]) for p in s["data"]]) for s in rows]


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
    status_items, status_classes = _status_items(await src.status_codes(qp))
    protocols = await src.protocols(qp)
    top = await src.top_endpoints(qp, 10)
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
        "status_chart": bar_chart(status_items, title="Status codes", classes=status_classes),
        "protocol_chart": bar_chart(
            [(p["protocol"], float(p["request_count"])) for p in protocols], title="Requests by protocol"
        ),
        "top_endpoints": top,
        "error_events": events,
        "heat_days": HEATMAP_DAYS,
        "heatmap_chart": heatmap(cells),
    }


async def endpoints_page(runtime: Any, qp: QueryParams, filters: Mapping[str, str]) -> dict[str, Any]:
    """Every endpoint in the window, sorted by the chosen column."""
    from .params import ParamError

    order = filters.get("order") or ("asc" if qp.sort == "endpoint" else "desc")
    if order not in ("asc", "desc"):
        raise ParamError("order", "expected asc or desc")
    rows = await _source(runtime).top_endpoints(qp, qp.limit if "limit" in filters else None)
    sort = qp.sort or "request_count"
    rows = sorted(
        rows,
        key=lambda r: (
            (r.get(sort) is None, r.get(sort) or 0) if sort != "endpoint" else (False, r["endpoint"])
        ),
        reverse=(order == "desc"),
    )
    columns = (
        ("endpoint", "Endpoint", False),
        ("protocol", "Protocol", False),
        ("request_count", "Requests", True),
        ("error_count", "Errors", True),
        ("error_rate", "Error rate", True),
        ("avg_latency_ms", "Avg", True),
        ("p95_latency_ms", "p95", True),
        ("p99_latency_ms", "p99", True),
    )
    from urllib.parse import urlencode

    base = {k: v for k, v in filters.items() if k not in ("sort", "order")}
    links = {}
    for key, _, _ in columns:
        sort_key = key if key in ENDPOINT_SORTS else "request_count"
        flip = "asc" if (sort_key == sort and order == "desc") else "desc"
        if sort_key != sort and sort_key == "endpoint":
            flip = "asc"
        links[key] = urlencode({**base, "sort": sort_key, "order": flip})
    return {
        "endpoints": rows,
        "sort": sort,
        "order": order,
        "columns": columns,
        "sort_links": links,
        "has_traffic": bool(rows),
    }


async def endpoint_page(runtime: Any, qp: QueryParams, filters: Mapping[str, str]) -> dict[str, Any]:
    """One endpoint: its cards, series by status class, latency, status codes, clients, errors."""
    src = _source(runtime)
    ov = await src.overview(qp)
    req = await src.request_series(qp, "status_class")
    lat = await src.latency_series(qp)
    status_items, status_classes = _status_items(await src.status_codes(qp))
    clients = await src.clients(qp, 10)
    events = await src.error_events(qp, 20)
    return {
        "cards": [c for c in build_cards(ov) if c.metric not in ("active_connections",)],
        "has_traffic": bool(ov.get("total_requests")),
        "method": filters.get("method", ""),
        "endpoint": filters.get("endpoint", ""),
        "request_chart": line_chart(_series_from(req), title="Requests by status class", y_label="requests"),
        "latency_chart": line_chart(
            _latency_series(lat), title="Latency percentiles", unit="ms", y_label="latency"
        ),
        "status_chart": bar_chart(status_items, title="Status codes", classes=status_classes),
        "clients": clients["clients"],
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
    return {"clients": data["clients"], "test_runs": data["test_runs"]}


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


def _source(runtime: Any) -> Any:
    """The data source the pages read (the query layer over `runtime.store`)."""
    from . import pagesample  # TEMPORARY until the query layer lands

    return pagesample.SampleSource(runtime)
