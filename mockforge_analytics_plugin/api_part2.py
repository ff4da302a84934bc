"""Part 2 of `<mount>/api`: errors, heatmap, clients, recent requests, stream, maintenance, OpenAPI."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .api_clients import clients_routes
from .api_errors import errors_routes
from .api_maintenance import maintenance_routes
from .api_patterns import patterns_routes
from .envelope import fail
from .openapi import build_openapi
from .stream import stream_routes

__all__ = ["api_part2_routes"]


async def openapi_json(request: Request) -> Response:
    """The OpenAPI 3.1 document of this API (cached per sub-app)."""
    if request.query_params:
        return fail(400, f"{next(iter(request.query_params))}: this route takes no parameters")
    state = request.app.state
    doc = getattr(state, "openapi_document", None)
    if doc is None:
        runtime = getattr(state, "runtime", None)
        config = getattr(runtime, "config", None)
        mount = request.scope.get("root_path", "").removesuffix("/api") or getattr(config, "mount_path", "")
        doc = state.openapi_document = build_openapi(mount, auth=getattr(config, "auth", None) is not None)
    return JSONResponse(doc)


def api_part2_routes() -> list[BaseRoute]:
    """The part-2 routes, to mount beside `api_routes()` under `<mount_path>/api`."""
    return [
        *errors_routes(),
        *clients_routes(),
        *patterns_routes(),
        *maintenance_routes(),
        *stream_routes(),
        Route("/openapi.json", openapi_json, methods=["GET"], name="openapi"),
    ]
