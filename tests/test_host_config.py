"""Config validation: every error names the key and says what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from example_host.config import ConfigError, load_config_file, validate_config

OK_ROUTE = {"method": "GET", "path": "/a"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"sever": {}},
            "sever: unknown key (allowed: server, workspace, environment, seed, routes, plugins)",
        ),
        ({"server": {"port": "80"}}, "server.port: must be an integer, got a string"),
        ({"server": {"port": 70000}}, "server.port: must be between 0 and 65535, got 70000"),
        ({"server": {"bind": 1}}, "server.bind: unknown key (allowed: host, port)"),
        ({"workspace": 3}, "workspace: must be a string, got an integer"),
        ({"seed": 1.5}, "seed: must be an integer, got a number"),
        ({"routes": {"a": 1}}, "routes: must be a list, got a mapping"),
        ({"routes": ["GET /a"]}, "routes[0]: must be a mapping, got a string"),
        (
            {"routes": [{"path": "/a"}]},
            "routes[0].method: missing (one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS)",
        ),
        (
            {"routes": [{"method": "FETCH", "path": "/a"}]},
            "routes[0].method: must be one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, got 'FETCH'",
        ),
        (
            {"routes": [{"method": "GET"}]},
            "routes[0].path: missing (a path template such as /api/users/{id})",
        ),
        ({"routes": [{"method": "GET", "path": "api"}]}, "routes[0].path: must start with '/', got 'api'"),
        (
            {"routes": [{"method": "GET", "path": "/a/{id"}]},
            "routes[0].path: bad path template '/a/{id': parameters look like {name} or {name:int}",
        ),
        (
            {"routes": [{"method": "GET", "path": "/a/{id:nope}"}]},
            "routes[0].path: bad path template '/a/{id:nope}': Unknown path convertor 'nope'",
        ),
        (
            {"routes": [{"method": "GET", "path": "/a/{id}/{id}"}]},
            "routes[0].path: bad path template '/a/{id}/{id}': Duplicated param name id at path /a/{id}/{id}",
        ),
        (
            {"routes": [OK_ROUTE, {**OK_ROUTE, "status": 600}]},
            "routes[1].status: must be between 100 and 599, got 600",
        ),
        ({"routes": [{**OK_ROUTE, "status": "200"}]}, "routes[0].status: must be an integer, got a string"),
        ({"routes": [{**OK_ROUTE, "status": True}]}, "routes[0].status: must be an integer, got a boolean"),
        (
            {"routes": [{**OK_ROUTE, "latency": 5}]},
            "routes[0].latency: unknown key (allowed: id, method, path, status, body, headers, "
            "latency_ms, faults, websocket, raise)",
        ),
        (
            {"routes": [{**OK_ROUTE, "latency_ms": -1}]},
            "routes[0].latency_ms: need 0 <= min <= max, got [-1.0, -1.0]",
        ),
        (
            {"routes": [{**OK_ROUTE, "latency_ms": [5, 2]}]},
            "routes[0].latency_ms: need 0 <= min <= max, got [5.0, 2.0]",
        ),
        (
            {"routes": [{**OK_ROUTE, "latency_ms": [1, 2, 3]}]},
            "routes[0].latency_ms: a range must be [min, max], got 3 values",
        ),
        (
            {"routes": [{**OK_ROUTE, "latency_ms": "5"}]},
            "routes[0].latency_ms: must be a number, got a string",
        ),
        (
            {"routes": [{**OK_ROUTE, "faults": {"status": 503}}]},
            "routes[0].faults.error_rate: missing (a number from 0 to 1)",
        ),
        (
            {"routes": [{**OK_ROUTE, "faults": {"error_rate": 1.5}}]},
            "routes[0].faults.error_rate: must be between 0 and 1, got 1.5",
        ),
        (
            {"routes": [{**OK_ROUTE, "faults": {"error_rate": 0.1, "status": 200}}]},
            "routes[0].faults.status: must be between 400 and 599, got 200",
        ),
        (
            {"routes": [{**OK_ROUTE, "faults": {"error_rate": 0.1, "rate": 1}}]},
            "routes[0].faults.rate: unknown key (allowed: error_rate, status, body)",
        ),
        (
            {"routes": [{**OK_ROUTE, "headers": {"X-A": [1]}}]},
            "routes[0].headers.X-A: must be a string, got a list",
        ),
        (
            {"routes": [{**OK_ROUTE, "websocket": "chat"}]},
            "routes[0].websocket: must be one of echo, got 'chat'",
        ),
        (
            {"routes": [{**OK_ROUTE, "websocket": "echo", "body": "x"}]},
            "routes[0].body: not allowed on a websocket route",
        ),
        ({"routes": [OK_ROUTE, {"method": "get", "path": "/a"}]}, "routes[1]: duplicates routes[0] (GET /a)"),
        ({"routes": [{**OK_ROUTE, "raise": 1}]}, "routes[0].raise: must be a string, got an integer"),
        ({"plugins": ["analytics"]}, "plugins: must be a mapping, got a list"),
        (
            {"plugins": {"analytics": {"enabled": "yes"}}},
            "plugins.analytics.enabled: must be true or false, got 'yes'",
        ),
        ({"plugins": {"analytics": 3}}, "plugins.analytics: must be a mapping, got an integer"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert str(err.value) == message


def test_a_full_config_validates_with_defaults() -> None:
    cfg = validate_config(
        {
            "server": {"host": "127.0.0.1", "port": 8080},
            "routes": [
                {"method": "get", "path": "/api/users/{id}", "body": {"id": "{id}"}, "latency_ms": [1, 2]},
                {"method": "GET", "path": "/ws", "websocket": "echo"},
                {"method": "POST", "path": "/x", "faults": {"error_rate": 0.5}, "headers": {"X-N": 5}},
            ],
            "plugins": {"analytics": None, "other": {"enabled": False}},
        }
    )
    assert (cfg.workspace, cfg.environment, cfg.seed, cfg.port) == ("default", "dev", None, 8080)
    users, ws, post = cfg.routes
    assert (users.method, users.id, users.param_names, users.status) == (
        "GET",
        "GET /api/users/{id}",
        ("id",),
        200,
    )
    assert users.latency_ms == (1.0, 2.0)
    assert ws.websocket == "echo"
    assert post.faults is not None and post.faults.status == 500 and post.headers == {"X-N": "5"}
    assert cfg.plugins == {"analytics": {}, "other": {"enabled": False}}


def test_load_config_file_reports_yaml_errors_with_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routes:\n  - method: GET\n   path: /a\n")
    with pytest.raises(ConfigError, match=r"line 3, column 4"):
        load_config_file(path)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping, got a list"):
        load_config_file(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_config_file(tmp_path / "empty.yaml") == {}


def test_demo_config_in_the_repo_is_valid() -> None:
    path = Path(__file__).resolve().parents[1] / "example_host" / "demo.yaml"
    cfg = validate_config(load_config_file(path))
    assert cfg.plugins["analytics"]["database_path"] == "demo-analytics.db"
    paths = {r.path for r in cfg.routes}
    assert {"/graphql", "/ws/echo", "/api/crash"} <= paths
    assert any(r.faults and r.faults.status >= 500 for r in cfg.routes)
    assert any(400 <= r.status < 500 for r in cfg.routes)
