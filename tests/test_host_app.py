"""In-process tests of the example host's mock routes, 404, /metrics and plugins.json."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from example_host.app import build_app
from example_host.config import validate_config
from example_host.mock_routes import closest_route, fault_rng, substitute
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from support.scope_spy import ScopeSpyPlugin

BASE_CONFIG: dict[str, Any] = {
    "seed": 7,
    "workspace": "team-a",
    "environment": "staging",
    "routes": [
        {
            "method": "GET",
            "path": "/api/users/{id}",
            "body": {"id": "{id}", "name": "Ada", "tags": ["user-{id}", 3]},
            "headers": {"X-Mock": "yes", "X-User": "{id}"},
        },
        {"method": "POST", "path": "/api/users", "status": 201, "body": {"created": True}},
        {"method": "GET", "path": "/slow", "body": "slow", "latency_ms": 30},
        {"method": "GET", "path": "/range", "latency_ms": [5, 15], "body": "r"},
        {"method": "GET", "path": "/flaky", "faults": {"error_rate": 0.3, "status": 503}, "body": "ok"},
        {
            "method": "GET",
            "path": "/always-fails",
            "faults": {"error_rate": 1, "status": 502, "body": "down"},
        },
        {"method": "GET", "path": "/items/{n:int}", "id": "item", "status": 200, "body": {"n": "{n}"}},
        {"method": "DELETE", "path": "/api/users/{id}", "status": 204},
        {"method": "GET", "path": "/boom", "raise": "kaboom"},
        {"method": "GET", "path": "/ws/echo", "websocket": "echo"},
    ],
}


def make_client(config: dict[str, Any] | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client on a fresh in-process host (no discovery unless asked)."""
    app = build_app(config or BASE_CONFIG, plugins=kwargs.pop("plugins", {}), **kwargs)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    client.app = app  # type: ignore[attr-defined]
    return client


def samples(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """All samples called `name` in a Prometheus exposition."""
    out = []
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name:
                out.append((sample.labels, sample.value))
    return out


def value(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent)."""
    for got, val in samples(metrics_text, name):
        if all(got.get(k) == v for k, v in labels.items()):
            return val
    return 0.0


async def test_route_answers_status_body_with_path_params_and_headers() -> None:
    async with make_client() as client, client.app.router.lifespan_context(client.app):
        r = await client.get("/api/users/42")
        assert r.status_code == 200
        assert r.json() == {"id": "42", "name": "Ada", "tags": ["user-42", 3]}
        assert r.headers["x-mock"] == "yes"
        assert r.headers["x-user"] == "42"
        r = await client.post("/api/users", json={"name": "x"})
        assert r.status_code == 201 and r.json() == {"created": True}
        r = await client.delete("/api/users/9")
        assert r.status_code == 204 and r.content == b""
        r = await client.get("/items/5")
        assert r.json() == {"n": "5"}
        # the int convertor does not match a word: unmatched
        assert (await client.get("/items/abc")).status_code == 404


async def test_fixed_latency_is_slept_and_range_stays_within_bounds() -> None:
    async with make_client() as client:
        start = time.perf_counter()
        r = await client.get("/slow")
        elapsed = time.perf_counter() - start
        assert r.status_code == 200
        assert 0.030 <= elapsed < 0.5
        for _ in range(5):
            start = time.perf_counter()
            await client.get("/range")
            elapsed = time.perf_counter() - start
            assert 0.005 <= elapsed < 0.4


async def test_fault_count_is_exact_for_a_fixed_seed() -> None:
    n = 200
    async with make_client() as client:
        statuses = [(await client.get("/flaky")).status_code for _ in range(n)]
    rng = fault_rng(7, "GET /flaky")
    expected = [503 if rng.random() < 0.3 else 200 for _ in range(n)]
    assert statuses == expected
    # A known number: changing how faults are drawn must show up here.
    assert statuses.count(503) == 64
    # A second host with the same seed repeats the sequence exactly.
    async with make_client() as client:
        again = [(await client.get("/flaky")).status_code for _ in range(n)]
    assert again == statuses


async def test_fault_body_and_rate_one() -> None:
    async with make_client() as client:
        for _ in range(5):
            r = await client.get("/always-fails")
            assert r.status_code == 502
            assert r.text == "down"
            assert r.headers["x-mockforge-fault"] == "1"


async def test_unmatched_request_gets_404_naming_the_closest_route() -> None:
    async with make_client() as client:
        r = await client.get("/api/user/42")
        assert r.status_code == 404
        assert r.json() == {
            "error": "no mock route matches GET /api/user/42",
            "closest": "GET /api/users/{id}",
        }
        r = await client.post("/api/userz")
        assert r.json()["closest"] == "POST /api/users"
    async with make_client({"routes": []}) as client:
        r = await client.get("/x")
        assert r.status_code == 404 and r.json() == {"error": "no mock route matches GET /x", "closest": None}


def test_closest_route_prefers_the_same_method() -> None:
    specs = validate_config(BASE_CONFIG).routes
    assert closest_route("DELETE", "/api/users/1/x", specs) == "DELETE /api/users/{id}"
    assert closest_route("GET", "/flaky/1", specs) == "GET /flaky"


def test_substitute_replaces_params_in_nested_strings_only() -> None:
    body = {"a": "{id}-{missing}", "b": [1, {"c": "{id}"}], "d": None, "e": True}
    assert substitute(body, {"id": 5}) == {"a": "5-{missing}", "b": [1, {"c": "5"}], "d": None, "e": True}


async def test_route_that_raises_answers_500() -> None:
    async with make_client() as client:
        r = await client.get("/boom")
        assert r.status_code == 500


def test_websocket_echo_route_echoes_text_and_bytes() -> None:
    app = build_app(BASE_CONFIG, plugins={})
    with TestClient(app) as client, client.websocket_connect("/ws/echo") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "hello"
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_bytes() == b"\x00\x01"


async def test_metrics_count_exactly_what_was_sent() -> None:
    async with make_client() as client, client.app.router.lifespan_context(client.app):
        for i in range(3):
            await client.get(f"/api/users/{i}")
        await client.post("/api/users")
        for _ in range(4):
            await client.get("/always-fails")
        await client.get("/nope/1")
        await client.get("/nope/2")
        await client.get("/boom")
        await client.post("/graphql", json={"query": "{ a }"})
        text = (await client.get("/metrics")).text
    by_path = "mockforge_requests_by_path_total"
    assert value(text, by_path, protocol="http", method="GET", path="/api/users/{id}", status="200") == 3
    assert value(text, by_path, protocol="http", method="POST", path="/api/users", status="201") == 1
    assert value(text, by_path, protocol="http", method="GET", path="/always-fails", status="502") == 4
    assert value(text, by_path, protocol="http", method="GET", path="__unmatched__", status="404") == 2
    assert value(text, by_path, protocol="http", method="GET", path="/boom", status="500") == 1
    assert value(text, by_path, protocol="graphql", method="POST", path="__unmatched__", status="404") == 1
    assert value(text, "mockforge_requests_total", protocol="http", method="GET", status="200") == 3
    assert value(text, "mockforge_requests_total", protocol="http", method="GET", status="502") == 4
    assert value(text, "mockforge_errors_total", protocol="http", error_type="server_error") == 4
    assert value(text, "mockforge_errors_total", protocol="http", error_type="client_error") == 2
    assert value(text, "mockforge_errors_total", protocol="http", error_type="exception") == 1
    assert value(text, "mockforge_errors_total", protocol="graphql", error_type="client_error") == 1
    count = "mockforge_request_duration_by_path_seconds_count"
    assert value(text, count, protocol="http", method="GET", path="/api/users/{id}") == 3
    # 12 requests before the scrape; the scrape itself is in flight while the text is rendered.
    total = sum(v for labels, v in samples(text, "mockforge_request_duration_seconds_count"))
    assert total == 12
    assert value(text, "mockforge_requests_in_flight", protocol="http") == 1
    # sub-millisecond buckets exist
    les = {labels["le"] for labels, _ in samples(text, "mockforge_request_duration_by_path_seconds_bucket")}
    assert "0.0005" in les and "0.0001" in les and "10.0" in les


def test_metrics_count_websocket_sessions() -> None:
    app = build_app(BASE_CONFIG, plugins={})
    with TestClient(app) as client:
        for _ in range(2):
            with client.websocket_connect("/ws/echo") as ws:
                ws.send_text("x")
                ws.receive_text()
        text = client.get("/metrics").text
    by_path = "mockforge_requests_by_path_total"
    assert value(text, by_path, protocol="websocket", method="GET", path="/ws/echo", status="101") == 2


async def test_plugins_json_lists_builtins_and_registered_plugins() -> None:
    class Tiny:
        __version__ = "9.9"

        @staticmethod
        def mockforge_links(host: Any) -> list[dict[str, str]]:
            return []

    async with make_client({**BASE_CONFIG, "plugins": {"tiny": {}}}, plugins={"tiny": Tiny()}) as client:
        doc = (await client.get("/__mockforge/plugins.json")).json()
        index = await client.get("/__mockforge/")
    assert doc["host"]["name"] == "mockforge-example-host"
    assert (doc["workspace"], doc["environment"]) == ("team-a", "staging")
    names = {p["name"]: p for p in doc["plugins"]}
    assert set(names) == {"metrics", "introspection", "tiny"}
    assert names["metrics"]["enabled"] and names["metrics"]["builtin"]
    assert names["metrics"]["hooks"] == [
        "mockforge_configure",
        "mockforge_links",
        "mockforge_middleware",
        "mockforge_routes",
    ]
    assert names["metrics"]["links"] == [{"title": "Prometheus metrics", "href": "/metrics"}]
    assert names["tiny"]["version"] == "9.9" and names["tiny"]["enabled"] is True
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert "/metrics" in index.text


async def test_scope_contract_for_matched_unmatched_and_faulted_requests() -> None:
    spy = ScopeSpyPlugin()
    seen = spy.seen
    config = {**BASE_CONFIG, "plugins": {"spy": {}}}
    async with make_client(config, plugins={"spy": spy}) as client:
        await client.get("/api/users/3")
        await client.get("/slow")
        await client.get("/always-fails")
        await client.get("/missing")
        await client.get("/items/1")
    assert seen[0] == {
        "matched": True,
        "route_template": "/api/users/{id}",
        "route_id": "GET /api/users/{id}",
        "workspace": "team-a",
        "environment": "staging",
        "injected_latency_ms": 0.0,
        "fault_injected": False,
    }
    assert seen[1]["injected_latency_ms"] == 30.0 and seen[1]["fault_injected"] is False
    assert seen[2]["fault_injected"] is True and seen[2]["route_template"] == "/always-fails"
    assert seen[3] == {
        "matched": False,
        "route_template": None,
        "route_id": None,
        "workspace": "team-a",
        "environment": "staging",
        "injected_latency_ms": 0.0,
        "fault_injected": False,
    }
    assert seen[4]["route_id"] == "item"


@pytest.mark.parametrize("path", ["/metrics", "/__mockforge/plugins.json"])
async def test_builtin_routes_are_plain_routes_not_redirects(path: str) -> None:
    async with make_client() as client:
        r = await client.get(path)
        assert r.status_code == 200
