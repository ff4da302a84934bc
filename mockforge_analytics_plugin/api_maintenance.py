"""`POST <mount>/api/retention/run` and `POST <mount>/api/reset`: the mutating routes.

Both need auth when auth is on (the auth middleware covers them). With auth off they are still
refused to a cross-site browser request (an ``Origin`` that is not this host), so a web page
cannot wipe a developer's local analytics with a hidden form.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .envelope import api_endpoint, fail, now_of, ok

__all__ = ["clear_recorder", "maintenance_routes", "same_origin"]


def same_origin(request: Request) -> bool:
    """False only when the browser says the request comes from another origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc.lower() == host.lower()


def clear_recorder(recorder: Any) -> None:
    """Drop what the recorder buffers (series, clients, errors) and its recent-requests ring."""
    for name in ("reset", "clear"):
        method = getattr(recorder, name, None)
        if callable(method):
            method()
            return
    recorder.swap()  # discard the buffered deltas
    ring = getattr(recorder, "_ring", None)
    if ring is not None:
        ring.clear()


@api_endpoint
async def retention_run(request: Request) -> Response:
    """Run retention now; answer what it deleted per table and slimmed past the histogram horizons."""
    runtime = request.app.state.runtime
    if request.query_params:
        return fail(400, f"{next(iter(request.query_params))}: this route takes no parameters")
    if not same_origin(request):
        return fail(403, "origin: cross-site requests may not run retention")
    if runtime.retention is None or runtime.store is None:
        return fail(503, "the analytics store is not running")
    now = now_of(request)
    deleted = await runtime.retention.retention_once(now)
    return ok(
        {
            "deleted": {k: int(v) for k, v in deleted.items()},
            "total": sum(deleted.values()),
            "slimmed": {k: int(v) for k, v in getattr(deleted, "slimmed", {}).items()},
            "ran_at": now,
        }
    )


@api_endpoint
async def reset(request: Request) -> Response:
    """Delete all analytics data (every table, and the recorder's buffers and ring)."""
    runtime = request.app.state.runtime
    if request.query_params:
        return fail(400, f"{next(iter(request.query_params))}: this route takes no parameters")
    if not same_origin(request):
        return fail(403, "origin: cross-site requests may not reset the data")
    if runtime.store is None:
        return fail(503, "the analytics store is not running")
    # Clear memory first, so nothing buffered before the reset is flushed after it. Retention's
    # reset deletes on its own connection (SQLite's write lock orders it with a running flush)
    # and drops the flush's cached series ids.
    async with runtime.flusher.paused():  # no flush swaps or writes until the tables are empty
        clear_recorder(runtime.recorder)
        deleted = await runtime.retention.reset()
    counts = {k: int(v) for k, v in deleted.items()} if isinstance(deleted, dict) else {}
    return ok({"deleted": counts, "total": sum(counts.values()), "reset_at": now_of(request)})


def maintenance_routes() -> list[BaseRoute]:
    """The mutating routes, mounted under `<mount>/api`."""
    return [
        Route("/retention/run", retention_run, methods=["POST"], name="retention_run"),
        Route("/reset", reset, methods=["POST"], name="reset"),
    ]
