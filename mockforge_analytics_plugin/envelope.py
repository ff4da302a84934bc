"""The API's response envelope: `{"success", "data", "error", "timestamp"}` (RFC 3339 UTC).

An optional `meta` object says how to read `data` when that differs from the usual: today only
`meta.percentile_resolution`, the spans whose percentiles were widened past a histogram horizon.

`api_endpoint` wraps a handler so that a :class:`ParamError` becomes a 400 naming the parameter
and any unexpected exception a logged 500 with a short message, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .params import ParamError

__all__ = ["api_endpoint", "fail", "now_of", "ok", "rfc3339"]

logger = logging.getLogger("mockforge.analytics.api")

Handler = Callable[[Request], Awaitable[Response]]


def rfc3339(ts: float | None = None) -> str:
    """Format Unix seconds (default: now) as RFC 3339 UTC, e.g. 2024-05-01T12:00:00.123Z."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ok(
    data: Any,
    *,
    status: int = 200,
    now: float | None = None,
    headers: dict[str, str] | None = None,
    meta: dict[str, Any] | None = None,
) -> JSONResponse:
    """A success envelope around `data`; `meta` (e.g. widened percentiles) only when there is some."""
    body = {"success": True, "data": data, "error": None, "timestamp": rfc3339(now)}
    if meta:
        body["meta"] = meta
    return JSONResponse(body, status_code=status, headers=headers)


def fail(
    status: int, message: str, *, now: float | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error envelope: `success` false, `data` null, `error` the message."""
    body = {"success": False, "data": None, "error": message, "timestamp": rfc3339(now)}
    return JSONResponse(body, status_code=status, headers=headers)


def now_of(request: Request) -> float:
    """The runtime's clock (injectable in tests), or wall time when no runtime is attached."""
    runtime = getattr(request.app.state, "runtime", None)
    clock = getattr(runtime, "clock", None)
    return clock() if callable(clock) else time.time()


def api_endpoint(handler: Handler) -> Handler:
    """Decorate a handler: ParamError -> 400 envelope, other exceptions -> logged 500 envelope."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ParamError as exc:
            return fail(400, f"{exc.param}: {exc.message}")
        except Exception as exc:
            logger.exception("analytics API %s failed", request.url.path)
            return fail(500, f"internal error ({type(exc).__name__}); see the server log")

    return wrapped
