"""The query-layer reads behind the dashboard pages: one method per panel, over ``runtime.store``."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, replace
from datetime import UTC
from typing import Any

from . import query
from .params import QueryParams
from .store.filters import glob_pattern
from .store.queries import read_markers

__all__ = ["QuerySource", "StoreUnavailableError"]


def _series_free(qp: QueryParams) -> QueryParams:
    """The window and the filters client rows have, without endpoint/method/status (not columns there)."""
    return replace(qp, endpoint=None, method=None, status_code=None, source=None)


class StoreUnavailableError(RuntimeError):
    """The store is not open (the host is starting or stopping)."""


class QuerySource:
    """The query-layer calls each panel needs, with the page's parameters."""

    def __init__(self, runtime: Any) -> None:
        store = getattr(runtime, "store", None)
        if store is None or getattr(store, "closed", False):
            raise StoreUnavailableError("the analytics store is not open (is the host starting or stopping?)")
        self.runtime = runtime
        self.conn = store.reader

    async def overview(self, qp: QueryParams) -> dict[str, Any]:
        """The overview figures, with the recorder's live gauges and drop counters."""
        recorder = self.runtime.recorder
        return await query.overview(
            self.conn,
            qp,
            active_connections=sum(recorder.in_flight().values()),
            dropped=asdict(recorder.drops),
        )

    async def request_series(self, qp: QueryParams, group_by: str) -> list[dict[str, Any]]:
        """Request counts per bucket, one series per `group_by` value."""
        return await query.requests_series(self.conn, replace(qp, group_by=group_by))

    async def latency_series(self, qp: QueryParams) -> list[dict[str, Any]]:
        """p50/p95/p99/avg per bucket over every matching series."""
        return await query.latency_series(self.conn, replace(qp, group_by=None))

    async def percentile_note(self, qp: QueryParams) -> str:
        """A sentence when part of the window's percentiles come from whole hours or days (past a
        histogram horizon, docs/storage.md), else ''."""
        meta = query.percentile_meta(qp, await read_markers(self.conn), step=qp.step)
        if not meta:
            return ""
        spans = meta["percentile_resolution"]
        unit = "days" if any(s["seconds"] == 86400 for s in spans) else "hours"
        return (
            f"Part of this window is older than the histogram horizon: its percentiles, min and max "
            f"are those of the whole {unit} around it. Counts keep full resolution."
        )

    async def status_codes(self, qp: QueryParams) -> list[dict[str, Any]]:
        """Counts per status code, most frequent first."""
        return (await query.status_codes(self.conn, qp))["codes"]

    async def top_endpoints(
        self, qp: QueryParams, limit: int, sort: str = "requests"
    ) -> list[dict[str, Any]]:
        """Endpoints ranked by `sort` (descending), at most `limit`."""
        return await query.top_endpoints(self.conn, replace(qp, limit=limit, sort=sort))

    async def error_events(self, qp: QueryParams, limit: int) -> list[dict[str, Any]]:
        """The newest matching error events."""
        from .store.queries_errors import error_events_page

        return await error_events_page(self.conn, qp, limit, 0)

    async def error_summary(self, qp: QueryParams) -> list[dict[str, Any]]:
        """Error events grouped by category and type."""
        from .api_errors import summarise
        from .store.queries_errors import error_summary_rows

        return summarise(await error_summary_rows(self.conn, qp), qp.limit)

    async def heatmap(self, qp: QueryParams, days: int) -> list[dict[str, Any]]:
        """The 7 x 24 UTC cells over the last `days` days."""
        from .api_patterns import heatmap_cells
        from .store.queries_patterns import hourly_totals

        end = math.ceil(qp.end / 3600) * 3600
        totals = await hourly_totals(self.conn, qp, end - days * 86400, end)
        return heatmap_cells(totals, UTC)

    async def clients(self, qp: QueryParams, limit: int) -> dict[str, Any]:
        """Clients and test runs, busiest first (the figures of ``GET /api/client-analysis``)."""
        from .api_clients import rank_clients

        return await rank_clients(self.conn, qp, "requests", limit)

    async def endpoint_clients(self, qp: QueryParams, limit: int) -> list[dict[str, Any]]:
        """Clients of the page's endpoint (and method), busiest first, with their requests to it.

        Client rows have no endpoint column: the window and the client-row filters select the
        rows, and each row's endpoint counts ("METHOD /template") give the requests to this one.
        """
        from .api_clients import figures_by
        from .store.queries_clients import endpoint_rows

        rows_qp = _series_free(qp)
        counts: dict[str, int] = {}
        for client, key, n in await endpoint_rows(self.conn, rows_qp, "client_ip"):
            method, _, endpoint = str(key).partition(" ")
            if _endpoint_matches(qp, method, endpoint):
                counts[client] = counts.get(client, 0) + int(n)
        if not counts:
            return []
        figures = await figures_by(self.conn, rows_qp, "client_ip")
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [
            {"client": c, "user_agent": figures.get(c, {}).get("user_agent", ""), "request_count": n}
            for c, n in ranked
        ]

    async def recent_requests(self, qp: QueryParams, limit: int) -> list[dict[str, Any]]:
        """The recorder's ring of recent requests, filtered, newest first."""
        from .api_clients import recent_matches

        config = self.runtime.config
        out = []
        for entry in self.runtime.recorder.recent(max(config.recent_requests, 1)):
            if recent_matches(entry, qp, True):
                out.append(asdict(entry))
                if len(out) >= limit:
                    break
        return out


def _endpoint_matches(qp: QueryParams, method: str, endpoint: str) -> bool:
    """True when a client row's "METHOD /template" count belongs to the page's endpoint filter."""
    if qp.method is not None and method.upper() not in {m.upper() for m in qp.method}:
        return False
    if qp.endpoint is None:
        return True
    if qp.endpoint_is_glob:  # only '*' is special, as in the query layer
        return fnmatch.fnmatchcase(endpoint, glob_pattern(qp.endpoint))
    return endpoint == qp.endpoint
