"""Schemathesis over openapi.json against a real server: no 500s, every response matches its schema.

The app is a plain Starlette app with `install_analytics` (the real Runtime: store, flush, roll-up
and retention tasks) served by uvicorn on 127.0.0.1 in a background thread, with known traffic.
Examples are capped so the whole run stays well under two minutes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, settings
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mockforge_analytics_plugin.openapi import build_openapi
from mockforge_analytics_plugin.standalone import install_analytics

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 30  # per operation; about 17 operations
schema = schemathesis.openapi.from_dict(build_openapi("/analytics"))


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    """A real uvicorn server with analytics installed and some traffic flushed into the store."""

    async def item(request):
        status = int(request.query_params.get("status", "200"))
        return PlainTextResponse("x" * 10, status_code=status)

    app = Starlette(routes=[Route("/items/{id:int}", item), Route("/orders", item, methods=["GET", "POST"])])
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    install_analytics(app, database_path=db, flush_interval_seconds=0.2, instance="fuzz")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    root = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=root, headers={"X-Test-Run": "fuzz"}) as client:
        for i in range(30):
            client.get(f"/items/{i}", params={"status": [200, 404, 500][i % 3]})
            client.post("/orders")
        deadline = time.monotonic() + 10
        while client.get("/analytics/api/overview").json()["data"]["total_requests"] < 60:
            assert time.monotonic() < deadline, "traffic was not flushed"
            time.sleep(0.1)
    try:
        yield root + "/analytics/api"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_responses_match_schema(case, base_url):
    case.call_and_validate(
        base_url=base_url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
