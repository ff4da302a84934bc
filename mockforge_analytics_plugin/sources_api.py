"""`GET <mount>/api/sources`: each data source (middleware, Prometheus) with its freshness and errors."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .envelope import api_endpoint, fail, now_of, ok

__all__ = ["list_sources", "sources_routes"]


def _middleware_status(runtime: Any, now: float) -> dict[str, Any]:
    flusher = getattr(runtime, "flusher", None)
    flush: dict[str, Any] = {}
    if flusher is not None and callable(getattr(flusher, "status", None)):
        flush = dict(flusher.status())
    recorder = getattr(runtime, "recorder", None)
    buffered = flush.get("buffered_requests")
    if buffered is None and recorder is not None and callable(getattr(recorder, "buffered_requests", None)):
        buffered = recorder.buffered_requests()
    dropped = flush.get("dropped")
    drops = getattr(recorder, "drops", None)
    if dropped is None and is_dataclass(drops) and not isinstance(drops, type):
        dropped = asdict(drops)
    last_flush = flush.get("last_flush_at")
    last_error = None
    if flush.get("last_error"):
        last_error = {"message": flush["last_error"], "time": flush.get("last_error_at")}
    return {
        "name": "middleware",
        "kind": "middleware",
        "instance": getattr(runtime, "instance", None),
        "buffered_requests": buffered,
        "dropped": dropped,
        "last_success_time": last_flush,
        "last_flush_at": last_flush,
        "last_flush_rows": flush.get("last_flush_rows"),
        "last_error": last_error,
        "lag_seconds": None if last_flush is None else round(max(0.0, now - float(last_flush)), 3),
        "failures": flush.get("failures"),
        "default": True,  # queries read this source unless `source` says otherwise
    }


def list_sources(runtime: Any, now: float) -> list[dict[str, Any]]:
    """Return the status of every source of this runtime, the middleware first."""
    sources = [_middleware_status(runtime, now)]
    prometheus = getattr(runtime, "prometheus", None)
    if prometheus is not None:
        entry = dict(prometheus.status())
        entry["default"] = False
        sources.append(entry)
    return sources


@api_endpoint
async def sources(request: Request) -> Response:
    """List the data sources with their last successful ingest, last error and lag."""
    if request.query_params:  # no filter here: one given is named, never silently ignored
        return fail(400, f"{next(iter(request.query_params))}: this route takes no parameters")
    runtime = request.app.state.runtime
    now = now_of(request)
    return ok(list_sources(runtime, now), now=now)


def sources_routes() -> list[BaseRoute]:
    """Routes for the sources endpoint, mounted under `<mount>/api`."""
    return [Route("/sources", sources, methods=["GET"], name="sources")]
