"""`GET export/csv` and `export/json`: the filtered rows of a dataset, streamed as a download.

Datasets and their columns, in order (the original's first, then ours):
- metrics (one row per bucket and series, at `granularity`): METRICS_HEADER
- endpoints (one row per endpoint, method and protocol over the window): ENDPOINTS_HEADER
- errors (error events): ERRORS_HEADER; clients (hourly client rows): CLIENTS_HEADER
Rows are read from the cursor in chunks and written as they come, so memory stays flat however
many rows match; there is no limit. JSON is one array (`format=json`, default) or JSON lines
(`format=ndjson`). In CSV, text cells starting with = + - @ tab or CR get a leading `'` so a
spreadsheet does not run them as formulas; numbers are written as numbers.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import aiosqlite
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from . import query
from .envelope import api_endpoint, fail, now_of
from .histogram import merge_into, quantiles
from .histogram_numpy import quantiles_many
from .params import COMMON_PARAMS, FILTER_PARAMS, ParamError, QueryParams, parse_params
from .store.queries import COUNTER_COLUMNS, TIER_TABLES, Markers, iter_rows, read_markers, series_lookup
from .store.queries_export import (
    CLIENT_COLUMNS,
    CLIENT_FILTERS,
    ERROR_EVENT_COLUMNS,
    ERROR_EVENT_FILTERS,
    iter_client_rows,
    iter_error_events,
)

__all__ = [
    "CLIENTS_HEADER",
    "DATASETS",
    "ENDPOINTS_HEADER",
    "ERRORS_HEADER",
    "EXPORT_PARAMS",
    "METRICS_HEADER",
    "export_filename",
    "export_routes",
    "neutralise",
]

logger = logging.getLogger("mockforge.analytics.export")

DATASETS = ("metrics", "endpoints", "errors", "clients")
EXPORT_PARAMS = COMMON_PARAMS | {"client"}
METRICS_HEADER = (
    "timestamp", "protocol", "method", "endpoint", "status_code", "request_count", "error_count",
    "avg_latency_ms", "p95_latency_ms", "bytes_sent", "bytes_received",
    "p50_latency_ms", "p99_latency_ms", "min_latency_ms", "max_latency_ms", "latency_count",
    "fault_count", "injected_latency_ms_sum", "session_count", "session_duration_ms_sum",
    "workspace_id", "environment", "test_run", "instance", "source",
)  # fmt: skip
ENDPOINTS_HEADER = (
    "endpoint", "protocol", "method", "total_requests", "total_errors", "error_rate", "avg_latency_ms",
    "p95_latency_ms", "bytes_sent", "bytes_received", "p50_latency_ms", "p99_latency_ms",
)  # fmt: skip
ERRORS_HEADER = ERROR_EVENT_COLUMNS
CLIENTS_HEADER = (*CLIENT_COLUMNS[:12], "avg_latency_ms", *CLIENT_COLUMNS[14:])
_HEADERS = {"metrics": METRICS_HEADER, "endpoints": ENDPOINTS_HEADER, "errors": ERRORS_HEADER,
            "clients": CLIENTS_HEADER}  # fmt: skip
# Filters a dataset cannot honour (its table has no such column) -> 400 rather than ignored.
_UNSUPPORTED = {
    "metrics": {"client"},
    "endpoints": {"client"},
    "errors": set(FILTER_PARAMS) - set(ERROR_EVENT_FILTERS),
    "clients": set(FILTER_PARAMS) - set(CLIENT_FILTERS),
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_DIMS = ("protocol", "method", "endpoint", "status_code", "workspace_id", "environment", "test_run",
         "instance", "source")  # fmt: skip


def neutralise(value: Any) -> Any:
    """Prefix text that a spreadsheet would run as a formula with `'`; numbers pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export_filename(now: float, extension: str) -> str:
    """`mockforge-analytics-YYYY-MM-DD.<ext>` for the UTC date of `now`."""
    return f"mockforge-analytics-{datetime.fromtimestamp(now, tz=UTC):%Y-%m-%d}.{extension}"


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def _metric_records(
    conn: aiosqlite.Connection, p: QueryParams, markers: Markers, *, safe: bool
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """METRICS_HEADER rows; rows of a finer tier are merged per (bucket, series) as they stream.

    With `safe`, the text cells (the series' dimensions) are neutralised once per series.
    """
    dims = await series_lookup(conn, p, _DIMS)
    if safe:
        dims = {sid: tuple(neutralise(v) for v in values) for sid, values in dims.items()}
    step = p.step
    n = len(COUNTER_COLUMNS)
    pending_bucket: int | None = None
    pending: dict[int, list[Any]] = {}  # series_id -> [counters..., min, max, hist dict]

    def finish(bucket: int, entries: dict[int, list[Any]]) -> list[tuple[Any, ...]]:
        out = []
        for sid, e in entries.items():
            pcts = quantiles(e[n + 2], query.QUANTILES) if e[n + 2] else [None, None, None]
            out.append(_metric_row(bucket, dims.get(sid), e[:n], e[n], e[n + 1], pcts))
        return out

    async for tier, rows in iter_rows(conn, p, markers):
        direct = TIER_TABLES[tier][1] == step  # one stored row per bucket and series
        out: list[tuple[Any, ...] | None] = []
        # Rows read as stored whose percentiles come from their histogram (minute rows store
        # none): computed for the whole chunk at once, then put in their places.
        todo: list[tuple[int, int, tuple[Any, ...]]] = []
        for row in rows:
            bucket = row[0] // step * step
            if pending and bucket != pending_bucket:
                out.extend(finish(pending_bucket, pending))  # type: ignore[arg-type]
                pending = {}
            if direct and not pending:
                values = row[2 : 2 + n]
                lo, hi = row[2 + n], row[3 + n]
                if row[4 + n] is None and row[7 + n]:
                    todo.append((len(out), bucket, row))
                    out.append(None)
                    continue
                out.append(_metric_row(bucket, dims.get(row[1]), values, lo, hi, row[4 + n : 7 + n]))
                continue
            pending_bucket = bucket
            e = pending.get(row[1])
            if e is None:
                pending[row[1]] = e = [0] * n + [None, None, {}]
            for i in range(n):
                e[i] += row[2 + i] or 0
            lo, hi = row[2 + n], row[3 + n]
            if lo is not None and (e[n] is None or lo < e[n]):
                e[n] = lo
            if hi is not None and (e[n + 1] is None or hi > e[n + 1]):
                e[n + 1] = hi
            merge_into(e[n + 2], row[7 + n])
        if todo:
            pcts_of = quantiles_many([row[7 + n] for _, _, row in todo], query.QUANTILES)
            for (at, bucket, row), pcts in zip(todo, pcts_of, strict=True):
                out[at] = _metric_row(bucket, dims.get(row[1]), row[2 : 2 + n], row[2 + n], row[3 + n], pcts)
        if out:
            yield cast(list[tuple[Any, ...]], out)
    if pending:
        yield finish(pending_bucket, pending)  # type: ignore[arg-type]


def _metric_row(
    bucket: int, dims: tuple[Any, ...] | None, v: Sequence[Any], lo: Any, hi: Any, pcts: Sequence[Any]
) -> tuple[Any, ...]:
    """One METRICS_HEADER row; `v` is COUNTER_COLUMNS in order (index-based: this runs per row)."""
    protocol, method, endpoint, status, ws, env, run, inst, source = dims or _NO_DIMS
    p50, p95, p99 = pcts
    return (
        bucket, protocol, method, endpoint, status, v[0], v[1],
        round(v[3] / v[2], 3) if v[2] else None, None if p95 is None else round(p95, 3), v[4], v[5],
        None if p50 is None else round(p50, 3), None if p99 is None else round(p99, 3),
        None if lo is None else round(lo, 3), None if hi is None else round(hi, 3), v[2],
        v[6], round(v[7], 3), v[8], round(v[9], 3), ws, env, run, inst, source,
    )  # fmt: skip


_NO_DIMS = ("",) * 9


async def _endpoint_records(
    conn: aiosqlite.Connection, p: QueryParams, markers: Markers
) -> AsyncIterator[list[tuple[Any, ...]]]:
    rows = await query.top_endpoints(conn, replace(p, limit=2**62, sort="requests"), markers=markers)
    yield [_endpoint_row(r) for r in rows]


def _endpoint_row(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["endpoint"], r["protocol"], r["method"], r["request_count"], r["error_count"], r["error_rate"],
        r["avg_latency_ms"], r["p95_latency_ms"], r["bytes_sent"], r["bytes_received"],
        r["p50_latency_ms"], r["p99_latency_ms"],
    )  # fmt: skip


async def _client_records(conn: aiosqlite.Connection, p: QueryParams) -> AsyncIterator[list[tuple[Any, ...]]]:
    async for rows in iter_client_rows(conn, p):
        yield [(*r[:12], _ms(r[13] / r[12]) if r[12] else None, *r[14:]) for r in rows]


def _records(
    dataset: str, conn: aiosqlite.Connection, p: QueryParams, markers: Markers, *, csv_safe: bool
) -> AsyncIterator[list[tuple[Any, ...]]]:
    if dataset == "metrics":
        return _metric_records(conn, p, markers, safe=csv_safe)
    if dataset == "endpoints":
        return _endpoint_records(conn, p, markers)
    if dataset == "errors":
        return iter_error_events(conn, p)
    return _client_records(conn, p)


async def _csv_body(
    header: Sequence[str], chunks: AsyncIterator[list[tuple[Any, ...]]], neutralise_cells: bool
) -> AsyncIterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    yield buf.getvalue().encode("utf-8")
    try:
        async for rows in chunks:
            buf.seek(0)
            buf.truncate()
            writer.writerows([[neutralise(v) for v in row] for row in rows] if neutralise_cells else rows)
            yield buf.getvalue().encode("utf-8")
    except Exception:  # headers are sent: all we can do is log and end the file early
        logger.exception("analytics CSV export failed part-way")


async def _json_body(
    header: Sequence[str], chunks: AsyncIterator[list[tuple[Any, ...]]], lines: bool
) -> AsyncIterator[bytes]:
    first = True
    if not lines:
        yield b"["
    try:
        async for rows in chunks:
            parts = [json.dumps(dict(zip(header, row, strict=True)), separators=(",", ":")) for row in rows]
            if not parts:
                continue
            if lines:
                yield ("\n".join(parts) + "\n").encode("utf-8")
            else:
                yield (("" if first else ",") + ",\n".join(parts)).encode("utf-8")
            first = False
    except Exception:
        logger.exception("analytics JSON export failed part-way")
    if not lines:
        yield b"]\n"


def _parse(request: Request, kind: str) -> tuple[QueryParams, str, str]:
    runtime = request.app.state.runtime
    extras = ("dataset", "format") if kind == "json" else ("dataset",)
    p = parse_params(
        request.query_params, allowed=EXPORT_PARAMS, now=now_of(request), config=runtime.config, extras=extras
    )
    dataset = p.extras.get("dataset", "metrics")
    if dataset not in DATASETS:
        raise ParamError("dataset", f"expected one of {', '.join(DATASETS)}")
    fmt = p.extras.get("format", "json")
    if fmt not in ("json", "ndjson"):
        raise ParamError("format", "expected json or ndjson")
    for name in sorted(_UNSUPPORTED[dataset]):
        if getattr(p, name) is not None:
            where = "errors and clients" if name == "client" else "metrics, endpoints and errors"
            raise ParamError(name, f"not a column of dataset={dataset}; it applies to datasets {where}")
    if dataset != "metrics" and "granularity" in request.query_params:
        raise ParamError("granularity", "applies to dataset=metrics only")
    return p, dataset, fmt


async def _export(request: Request, kind: str) -> Response:
    p, dataset, fmt = _parse(request, kind)
    store = getattr(request.app.state.runtime, "store", None)
    if store is None or getattr(store, "closed", False):
        return fail(503, "analytics store is not open")
    conn = store.reader
    markers = await read_markers(conn)
    header = _HEADERS[dataset]
    # Metrics rows neutralise their text once per series; other datasets cell by cell.
    chunks = _records(dataset, conn, p, markers, csv_safe=kind == "csv")
    ext = "csv" if kind == "csv" else ("ndjson" if fmt == "ndjson" else "json")
    headers = {"Content-Disposition": f'attachment; filename="{export_filename(now_of(request), ext)}"'}
    if kind == "csv":
        return StreamingResponse(
            _csv_body(header, chunks, dataset != "metrics"),
            media_type="text/csv; charset=utf-8",
            headers=headers,
        )
    media = "application/x-ndjson" if fmt == "ndjson" else "application/json"
    return StreamingResponse(_json_body(header, chunks, fmt == "ndjson"), media_type=media, headers=headers)


@api_endpoint
async def export_csv(request: Request) -> Response:
    """`GET export/csv?dataset=...`: the filtered rows as CSV."""
    return await _export(request, "csv")


@api_endpoint
async def export_json(request: Request) -> Response:
    """`GET export/json?dataset=...&format=json|ndjson`: the filtered rows as JSON or JSON lines."""
    return await _export(request, "json")


def export_routes() -> list[BaseRoute]:
    """The two export routes (relative to `<mount>/api`)."""
    return [
        Route("/export/csv", export_csv, name="export_csv"),
        Route("/export/json", export_json, name="export_json"),
    ]
