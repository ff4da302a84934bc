"""Answers of the core API routes, assembled from the store's tier-split reads.

Percentiles are read from merged histograms (never averaged); average latency is
latency_sum / latency_count (requests with a latency, WebSocket sessions excluded). Figures
cover what the store holds: requests still buffered in the recorder (at most one flush
interval, 1 s by default) appear after the next flush.

Past the histogram horizons (docs/storage.md) a percentile is that of the enclosing hours or
days (store/tiers.py ``histogram_ranges``); counters keep their resolution.
:func:`percentile_meta` says which parts of a window were widened, for the envelope's ``meta``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

import aiosqlite

from .histogram import arrays as histogram_arrays
from .histogram import bucket_value, merge_blobs, merge_into, quantiles
from .params import QueryParams
from .store.queries import (
    Counters,
    Markers,
    coarsest_for,
    iter_histograms,
    percentile_bucket,
    read_markers,
    series_lookup,
    sum_counters,
    unique_clients,
    widened_ranges,
)

_np: Any
try:  # numpy merges thousands of histograms ~3-5x faster; pure Python gives the same numbers.
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is optional
    _np = None

__all__ = [
    "QUANTILES",
    "TOP_ENDPOINT_SORTS",
    "latency_series",
    "overview",
    "percentile_meta",
    "percentiles_by_key",
    "protocol_breakdown",
    "requests_series",
    "status_codes",
    "top_endpoints",
]

QUANTILES = (0.5, 0.95, 0.99)
TOP_ENDPOINT_SORTS = ("requests", "errors", "error_rate", "avg", "p95", "p99")
USE_NUMPY = _np is not None and os.environ.get("MOCKFORGE_ANALYTICS_NO_NUMPY") != "1"
_ENDPOINT_DIMS = ("endpoint", "method", "protocol")
# What each route shows, so the SQL sums only that (see store.queries.sum_counters).
_LATENCY_FIELDS = ("latency_count", "latency_sum", "latency_min", "latency_max")
_ENDPOINT_FIELDS = (
    "request_count",
    "error_count",
    "latency_count",
    "latency_sum",
    "bytes_sent",
    "bytes_received",
)
_PROTOCOL_FIELDS = (*_ENDPOINT_FIELDS, "session_count")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 4) if whole else 0.0


def _label(dim: str, value: Any) -> str:
    return f"{value}xx" if dim == "status_class" else str(value)


def percentile_meta(p: QueryParams, markers: Markers, *, step: int | None = None) -> dict[str, Any] | None:
    """``{"percentile_resolution": [{start, end, seconds}]}`` for the widened parts, or None.

    Each entry is a span of whole hours (seconds 3600) or days (86400) whose merged histogram
    gave the percentiles of the part of the window inside it.
    """
    widened = widened_ranges(p.start, p.end, markers, coarsest_for(step))
    if not widened:
        return None
    return {
        "percentile_resolution": [{"start": r.start, "end": r.end, "seconds": r.widened} for r in widened]
    }


def _buckets(p: QueryParams) -> list[int]:
    return list(range(p.start // p.step * p.step, p.end, p.step))


def _overlap(p: QueryParams, bucket: int) -> int:
    """Seconds of the window inside a bucket (edges are partial)."""
    return min(bucket + p.step, p.end) - max(bucket, p.start)


async def percentiles_by_key(
    chunks: AsyncIterator[list[tuple[int, int, bytes]]],
    key_of: Callable[[int, int], Hashable | None],
    qs: tuple[float, ...] = QUANTILES,
) -> dict[Hashable, list[float | None]]:
    """Merge histogram rows (bucket, series_id, blob) per `key_of(bucket, series_id)`; return quantiles."""
    if USE_NUMPY:
        ids: dict[Hashable, int] = {}
        row_ids: list[int] = []
        blobs: list[bytes] = []
        async for rows in chunks:
            for bucket, sid, blob in rows:
                key = key_of(bucket, sid)
                if key is not None and blob:
                    row_ids.append(ids.setdefault(key, len(ids)))
                    blobs.append(blob)
        return _np_grouped_quantiles(ids, row_ids, blobs, qs)
    hists: dict[Hashable, dict[int, int]] = {}
    async for rows in chunks:
        for bucket, sid, blob in rows:
            key = key_of(bucket, sid)
            if key is not None and blob:
                merge_into(hists.setdefault(key, {}), blob)
    return {key: quantiles(h, qs) for key, h in hists.items()}


def _np_quantiles(blobs: list[bytes], qs: tuple[float, ...]) -> list[float | None]:
    """Same rule as histogram.quantiles (first bucket whose cumulative count exceeds q*(n-1))."""
    _, index, count = histogram_arrays(blobs)
    counts = _np.bincount(index, weights=count)
    cum = _np.cumsum(counts)
    total = cum[-1] if len(cum) else 0
    if total <= 0:
        return [None for _ in qs]
    idx = _np.searchsorted(cum, [q * (total - 1) for q in qs], side="right")
    return [bucket_value(int(i)) for i in idx]


_MAX_DENSE_CELLS = 4_000_000  # keys x bucket indices held at once (32 MB of float64)


def _np_grouped_quantiles(
    ids: dict[Hashable, int], row_ids: list[int], blobs: list[bytes], qs: tuple[float, ...]
) -> dict[Hashable, list[float | None]]:
    """Quantiles per key in one vectorised pass: a dense (keys x bucket index) count matrix."""
    if not blobs:
        return {}
    owner, index, count = histogram_arrays(blobs)
    if not len(index):
        return {key: [None for _ in qs] for key in ids}
    width = int(index.max()) + 1
    if len(ids) * width > _MAX_DENSE_CELLS:  # too many keys for one matrix: key by key
        parts: dict[int, list[bytes]] = {}
        for rid, blob in zip(row_ids, blobs, strict=True):
            parts.setdefault(rid, []).append(blob)
        return {key: _np_quantiles(parts[rid], qs) for key, rid in ids.items()}
    keys = _np.asarray(row_ids, dtype=_np.int64)[owner]
    dense = _np.bincount(keys * width + index, weights=count, minlength=len(ids) * width)
    cum = _np.cumsum(dense.reshape(len(ids), width), axis=1)
    total = cum[:, -1]
    # First bucket whose cumulative count exceeds q*(n-1): the number of buckets at or below it.
    found = [(cum <= (q * (total - 1))[:, None]).sum(axis=1) for q in qs]
    out: dict[Hashable, list[float | None]] = {}
    for key, rid in ids.items():
        out[key] = [bucket_value(int(f[rid])) for f in found] if total[rid] > 0 else [None for _ in qs]
    return out


def _latency_fields(c: Counters | None, pcts: list[float | None] | None) -> dict[str, Any]:
    p50, p95, p99 = pcts or (None, None, None)
    return {
        "avg_latency_ms": _ms(c.avg_latency if c else None),
        "p50_latency_ms": _ms(p50),
        "p95_latency_ms": _ms(p95),
        "p99_latency_ms": _ms(p99),
    }


async def overview(
    conn: aiosqlite.Connection,
    p: QueryParams,
    *,
    active_connections: int = 0,
    dropped: dict[str, int] | None = None,
    top_n: int = 10,
    markers: Markers | None = None,
) -> dict[str, Any]:
    """The overview cards of the window (DESIGN.md §5): totals, percentiles, rates, top lists.

    One counter pass per series and one histogram pass serve the totals, the protocol list and
    the top endpoints alike.
    """
    markers = markers or await read_markers(conn)
    lookup = await series_lookup(conn, p, _ENDPOINT_DIMS)
    per_series = await sum_counters(conn, p, markers, dims=("series_id",))
    totals = Counters()
    by_protocol: dict[tuple[Any, ...], Counters] = {}
    by_endpoint: dict[tuple[Any, ...], Counters] = {}
    for (sid,), c in per_series.items():
        totals.merge(c)
        dims = lookup.get(sid)
        if dims is None:  # a series created after the lookup: counted in totals only
            continue
        by_protocol.setdefault((dims[2],), Counters()).merge(c)
        by_endpoint.setdefault(dims, Counters()).merge(c)
    blobs: dict[int, list[bytes]] = {}
    async for rows in iter_histograms(conn, p, markers):
        for _, sid, blob in rows:
            if blob:
                blobs.setdefault(sid, []).append(blob)
    pcts = _quantiles_of([b for parts in blobs.values() for b in parts])
    top = _endpoint_rows(by_endpoint, "requests")[:top_n]
    wanted = {(r["endpoint"], r["method"], r["protocol"]): r for r in top}
    group_blobs: dict[tuple[Any, ...], list[bytes]] = {}
    for sid, parts in blobs.items():
        key = lookup.get(sid)
        if key in wanted:
            group_blobs.setdefault(key, []).extend(parts)
    for key, r in wanted.items():
        _finish_endpoint_row(r, _quantiles_of(group_blobs.get(key, [])))
    dropped = dropped or {}
    return {
        "total_requests": totals.request_count,
        "total_errors": totals.error_count,
        "error_rate": _pct(totals.error_count, totals.request_count),
        **_latency_fields(totals, pcts),
        "min_latency_ms": _ms(totals.latency_min),
        "max_latency_ms": _ms(totals.latency_max),
        "requests_per_second": round(totals.request_count / p.seconds, 4),
        "total_bytes_sent": totals.bytes_sent,
        "total_bytes_received": totals.bytes_received,
        "fault_count": totals.fault_count,
        "websocket_sessions": totals.session_count,
        "active_connections": active_connections,
        "unique_clients": await unique_clients(conn, p),
        "top_protocols": [
            {k: row[k] for k in ("protocol", "request_count", "error_count", "avg_latency_ms")}
            for row in _protocol_rows(by_protocol)
        ],
        "top_endpoints": top,
        "dropped_events": dropped.get("buffer_dropped_requests", 0)
        + dropped.get("buffer_dropped_error_events", 0),
        "drops": dropped,
        "window": {"start": p.start, "end": p.end, "seconds": p.seconds},
    }


def _quantiles_of(blobs: list[bytes], qs: tuple[float, ...] = QUANTILES) -> list[float | None]:
    """Quantiles of the merge of packed histograms."""
    if not blobs:
        return [None for _ in qs]
    if USE_NUMPY:
        return _np_quantiles(blobs, qs)
    return quantiles(merge_blobs(blobs), qs)


async def requests_series(
    conn: aiosqlite.Connection, p: QueryParams, *, markers: Markers | None = None
) -> list[dict[str, Any]]:
    """Request counts per bucket, one series per `group_by` value (default protocol), zero-filled."""
    markers = markers or await read_markers(conn)
    dim = p.group_by or "protocol"
    sums = await sum_counters(conn, p, markers, dims=(dim,), step=p.step, fields=("request_count",))
    per_label: dict[str, dict[int, int]] = {}
    for (bucket, value), c in sums.items():
        counts = per_label.setdefault(_label(dim, value), {})
        counts[bucket] = counts.get(bucket, 0) + c.request_count
    buckets = _buckets(p)
    out = []
    for label, counts in sorted(per_label.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])):
        data = [
            {"timestamp": b, "value": counts.get(b, 0), "rate": round(counts.get(b, 0) / _overlap(p, b), 4)}
            for b in buckets
        ]
        out.append({"label": label, "total": sum(counts.values()), "data": data})
    return out


async def latency_series(
    conn: aiosqlite.Connection, p: QueryParams, *, markers: Markers | None = None
) -> list[dict[str, Any]]:
    """Per bucket p50/p95/p99/avg/min/max (ms); with `group_by`, a list of {label, data} series.

    Without group_by the answer is the flat list [{timestamp, p50, ...}] (the original's shape).
    A bucket past a histogram horizon shows the percentiles of its enclosing hour or day.
    """
    markers = markers or await read_markers(conn)
    dim = p.group_by
    dims = (dim,) if dim else ()
    sums = await sum_counters(conn, p, markers, dims=dims, step=p.step, fields=_LATENCY_FIELDS)
    lookup = await series_lookup(conn, p, dims) if dim else {}

    def key_of(bucket: int, sid: int) -> Hashable | None:
        if not dim:
            return (bucket,)
        dims_of = lookup.get(sid)
        return None if dims_of is None else (bucket, dims_of[0])

    pcts = await percentiles_by_key(iter_histograms(conn, p, markers, step=p.step), key_of)
    buckets = _buckets(p)
    pct_bucket = percentile_bucket(p.start, p.end, p.step, markers)

    def points(value: Any) -> list[dict[str, Any]]:
        data = []
        for b in buckets:
            key = (b, value) if dim else (b,)
            c = sums.get(key)
            wide = pct_bucket(b)
            q = pcts.get((wide, value) if dim else (wide,)) or (None, None, None)
            if wide != b and not (c and c.latency_count):
                q = (None, None, None)  # a widened percentile describes a bucket's traffic: none here
            data.append(
                {
                    "timestamp": b,
                    "p50": _ms(q[0]),
                    "p95": _ms(q[1]),
                    "p99": _ms(q[2]),
                    "avg": _ms(c.avg_latency if c else None),
                    "min": _ms(c.latency_min if c else None),
                    "max": _ms(c.latency_max if c else None),
                    "count": c.latency_count if c else 0,
                }
            )
        return data

    if not dim:
        return points(None)
    totals: dict[Any, int] = {}
    for (_, value), c in sums.items():
        totals[value] = totals.get(value, 0) + c.latency_count
    ordered = sorted(totals, key=lambda v: (-totals[v], str(v)))
    return [{"label": _label(dim, v), "data": points(v)} for v in ordered]


async def top_endpoints(
    conn: aiosqlite.Connection, p: QueryParams, *, markers: Markers | None = None
) -> list[dict[str, Any]]:
    """Busiest (or slowest, most failing) endpoints of the window, `p.sort` order, `p.limit` rows."""
    markers = markers or await read_markers(conn)
    sort = p.sort or "requests"
    sums = await sum_counters(conn, p, markers, dims=_ENDPOINT_DIMS, fields=_ENDPOINT_FIELDS)
    need_all = sort in ("p95", "p99")  # ranking by a percentile needs every endpoint's histogram
    rows = _endpoint_rows(sums, "requests" if need_all else sort)
    if not need_all:
        rows = rows[: p.limit]
    wanted = {(r["endpoint"], r["method"], r["protocol"]) for r in rows}
    lookup = await series_lookup(conn, p, _ENDPOINT_DIMS)
    ids = [sid for sid, key in lookup.items() if key in wanted]
    chunks = iter_histograms(conn, p, markers, series_ids=None if need_all else ids)
    pcts = await percentiles_by_key(chunks, lambda b, sid: lookup.get(sid))
    for r in rows:
        _finish_endpoint_row(r, pcts.get((r["endpoint"], r["method"], r["protocol"])))
    if need_all:
        rows.sort(key=_sort_key(sort))
        rows = rows[: p.limit]
    return rows


def _endpoint_rows(sums: dict[tuple[Any, ...], Counters], sort: str) -> list[dict[str, Any]]:
    """Rows of (endpoint, method, protocol) sums, ranked by `sort` (percentiles filled in later)."""
    rows = [
        {
            "endpoint": k[0],
            "method": k[1],
            "protocol": k[2],
            "request_count": c.request_count,
            "error_count": c.error_count,
            "error_rate": _pct(c.error_count, c.request_count),
            "_c": c,
        }
        for k, c in sums.items()
        if c.request_count
    ]
    rows.sort(key=_sort_key(sort))
    return rows


def _finish_endpoint_row(r: dict[str, Any], pcts: list[float | None] | None) -> None:
    c = r.pop("_c")
    r.update(_latency_fields(c, pcts))
    r.update(bytes_sent=c.bytes_sent, bytes_received=c.bytes_received)


def _sort_key(sort: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Descending by the chosen figure, then by requests, then by name (stable across calls)."""

    def figure(r: dict[str, Any]) -> float:
        if sort == "requests":
            return r["request_count"]
        if sort == "errors":
            return r["error_count"]
        if sort == "error_rate":
            return r["error_rate"]
        if sort == "avg":
            value = r["_c"].avg_latency if "_c" in r else r["avg_latency_ms"]
        else:
            value = r[f"{sort}_latency_ms"]
        return -1.0 if value is None else value

    return lambda r: (-figure(r), -r["request_count"], r["endpoint"], r["method"], r["protocol"])


async def protocol_breakdown(
    conn: aiosqlite.Connection, p: QueryParams, *, markers: Markers | None = None
) -> list[dict[str, Any]]:
    """Per protocol: requests, errors, error rate, avg latency, bytes, sessions and share (percent)."""
    markers = markers or await read_markers(conn)
    return _protocol_rows(await sum_counters(conn, p, markers, dims=("protocol",), fields=_PROTOCOL_FIELDS))


def _protocol_rows(sums: dict[tuple[Any, ...], Counters]) -> list[dict[str, Any]]:
    total = sum(c.request_count for c in sums.values())
    rows = [
        {
            "protocol": k[0],
            "request_count": c.request_count,
            "error_count": c.error_count,
            "error_rate": _pct(c.error_count, c.request_count),
            "avg_latency_ms": _ms(c.avg_latency),
            "bytes_sent": c.bytes_sent,
            "bytes_received": c.bytes_received,
            "session_count": c.session_count,
            "share": _pct(c.request_count, total),
        }
        for k, c in sums.items()
    ]
    rows.sort(key=lambda r: (-r["request_count"], r["protocol"]))
    return rows


async def status_codes(
    conn: aiosqlite.Connection, p: QueryParams, *, markers: Markers | None = None
) -> dict[str, Any]:
    """Counts and shares (percent) per status code and per class (2xx, 4xx, ...)."""
    markers = markers or await read_markers(conn)
    sums = await sum_counters(conn, p, markers, dims=("status_code",), fields=("request_count",))
    total = sum(c.request_count for c in sums.values())
    codes = sorted(((k[0], c.request_count) for k, c in sums.items()), key=lambda kv: (-kv[1], kv[0]))
    classes: dict[int, int] = {}
    for code, count in codes:
        classes[code // 100] = classes.get(code // 100, 0) + count
    return {
        "total": total,
        "codes": [{"status_code": code, "count": n, "share": _pct(n, total)} for code, n in codes],
        "classes": [
            {"class": f"{k}xx", "count": n, "share": _pct(n, total)} for k, n in sorted(classes.items())
        ],
    }
