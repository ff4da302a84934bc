"""openapi.json: a valid OpenAPI 3.1 document that matches the routes and what each one accepts."""

from __future__ import annotations

from openapi_spec_validator import validate
from starlette.routing import Mount, Route
from support.api2_traffic import api_client

from mockforge_analytics_plugin.app import all_api_routes
from mockforge_analytics_plugin.openapi import build_openapi, route_docs


def _route_paths(routes) -> set[tuple[str, str]]:
    out = set()
    for r in routes:
        if isinstance(r, Route):
            for m in r.methods or ():
                if m != "HEAD":
                    out.add((r.path, m.lower()))
        elif isinstance(r, Mount):
            out |= {(r.path + p, m) for p, m in _route_paths(r.routes)}
    return out


def test_document_is_valid_openapi_31():
    for auth in (False, True):
        doc = build_openapi("/analytics", auth=auth)
        assert doc["openapi"] == "3.1.0"
        validate(doc)  # raises on an invalid document
    assert "401" in build_openapi(auth=True)["paths"]["/overview"]["get"]["responses"]
    assert "401" not in build_openapi(auth=False)["paths"]["/overview"]["get"]["responses"]


def test_every_http_route_of_parts_1_and_2_is_documented():
    routes = _route_paths(all_api_routes())
    doc = build_openapi()
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    assert "/stream" in doc["x-websocket"]


def test_parameters_have_types_and_enums():
    doc = build_openapi()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/requests"]["get"]["parameters"]}
    assert params["granularity"]["enum"] == ["minute", "hour", "day", "auto"]
    assert "endpoint" in params["group_by"]["enum"]
    assert "client" not in params  # clients are not a dimension of /requests
    top = {p["name"]: p["schema"] for p in doc["paths"]["/top-endpoints"]["get"]["parameters"]}
    assert top["sort"]["enum"][0] == "requests" and top["limit"]["type"] == "integer"
    clients = {p["name"]: p["schema"] for p in doc["paths"]["/client-analysis"]["get"]["parameters"]}
    assert clients["sort"]["enum"] == ["requests", "errors", "error_rate", "avg_latency", "bytes", "client"]
    assert "client" in clients and "method" not in clients
    heat = {p["name"] for p in doc["paths"]["/traffic-patterns"]["get"]["parameters"]}
    assert {"days", "tz", "protocol", "status_code"} <= heat and "start_time" not in heat


async def test_documented_parameters_are_accepted_and_others_refused(tmp_path):
    """The document and the parser share one registry: check it route by route."""
    sample = {
        "start_time": "1704280000", "end_time": "1704285000", "granularity": "hour", "protocol": "http",
        "method": "GET", "endpoint": "/api/*", "status_code": "2xx", "workspace_id": "default",
        "environment": "dev", "test_run": "run-a", "source": "middleware", "instance": "test:1",
        "client": "10.0.0.1", "limit": "5", "offset": "0", "days": "7", "tz": "Europe/Berlin",
        "dataset": "metrics", "format": "ndjson", "group_by": "endpoint",
    }  # fmt: skip
    all_names = set(sample) | {"duration", "sort"}
    async with api_client(tmp_path) as (client, _):
        for doc in route_docs():
            # Exports: which filters apply depends on `dataset` (checked by the export tests).
            if (
                doc.method != "get"
                or doc.path in ("/openapi.json", "/status")
                or doc.path.startswith("/export")
            ):
                continue
            names = {p["name"] for p in build_openapi()["paths"][doc.path]["get"]["parameters"]}
            for name in sorted(names - {"duration", "sort"}):
                r = await client.get(f"/analytics/api{doc.path}", params={name: sample[name]})
                assert r.status_code == 200, (doc.path, name, r.text)
            for name in sorted(all_names - names):
                r = await client.get(f"/analytics/api{doc.path}", params={name: sample.get(name, "x")})
                assert r.status_code == 400 and r.json()["error"].startswith(name + ":"), (doc.path, name)


async def test_openapi_route_serves_the_document(tmp_path):
    async with api_client(tmp_path) as (client, _):
        doc = (await client.get("/analytics/api/openapi.json")).json()
    assert doc["servers"] == [{"url": "/analytics/api"}]
    assert set(doc["paths"]) >= {"/errors", "/top-errors", "/traffic-patterns", "/client-analysis",
                                 "/recent-requests", "/reset", "/retention/run", "/overview"}  # fmt: skip
