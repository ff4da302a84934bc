"""`GET <mount>/api/status`: plugin version, config in effect (secrets redacted), uptime, buffers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .envelope import api_endpoint, fail, ok

__all__ = ["status_routes"]


@api_endpoint
async def status(request: Request) -> JSONResponse:
    """Report what this plugin instance is doing (no parameters: one given is a 400, not ignored)."""
    if request.query_params:
        return fail(400, f"{next(iter(request.query_params))}: this route takes no parameters")
    return ok(request.app.state.runtime.status())


def status_routes() -> list[BaseRoute]:
    """Routes for the status endpoint, mounted under `<mount>/api`."""
    return [Route("/status", status, methods=["GET"], name="status")]
