"""`GET <mount>/api/status`: plugin version, config in effect (secrets redacted), uptime, buffers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .envelope import ok

__all__ = ["status_routes"]


async def status(request: Request) -> JSONResponse:
    """Report what this plugin instance is doing."""
    return ok(request.app.state.runtime.status())


def status_routes() -> list[BaseRoute]:
    """Routes for the status endpoint, mounted under `<mount>/api`."""
    return [Route("/status", status, methods=["GET"], name="status")]
