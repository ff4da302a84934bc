"""The real `example-host` process: signals, one-line config errors, the plugins command, demo traffic."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support.hostproc import default_executable, free_port, run_host, write_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

# A plugin module put on PYTHONPATH and registered through MOCKFORGE_EXTRA_PLUGINS (entry points
# need an installed distribution). It records every request's headers and writes them on exit.
PROBE = """
import contextlib, json
import pluggy
from starlette.middleware import Middleware

hookimpl = pluggy.HookimplMarker("mockforge")
__version__ = "0.0.1"


class Probe:
    def __init__(self, app, sink):
        self.app, self.sink = app, sink

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            h = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.sink.append({"type": scope["type"], "path": scope["path"], "client": h.get("x-client-id"),
                              "ua": h.get("user-agent"), "run": h.get("x-test-run"),
                              "traceparent": h.get("traceparent"), "method": scope.get("method")})
        await self.app(scope, receive, send)


@hookimpl
def mockforge_configure(host, config):
    section = host.plugin_config("probe") or {}
    if "bad_key" in section:
        raise ValueError("bad_key: must not be set")
    host.state["probe"] = {"seen": [], "out": host.resolve_path(section.get("out", "probe-exit.json")),
                           "fail_start": section.get("fail_start", False)}


@hookimpl
def mockforge_middleware(host):
    return [Middleware(Probe, sink=host.state["probe"]["seen"])]


@hookimpl
def mockforge_lifespan(host, app):
    @contextlib.asynccontextmanager
    async def running():
        if host.state["probe"]["fail_start"]:
            raise RuntimeError("probe could not start")
        try:
            yield
        finally:
            state = host.state["probe"]
            state["out"].write_text(json.dumps({"exited": True, "seen": state["seen"]}))
    return running()
"""


def probe_env(tmp_path: Path) -> dict[str, str]:
    """Environment that makes the probe plugin available as `probe`."""
    (tmp_path / "host_probe.py").write_text(PROBE)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "MOCKFORGE_EXTRA_PLUGINS": "probe=host_probe"}


def counts(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples named `name`."""
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
        if s.name == name
    ]


ROUTES: list[dict[str, Any]] = [
    {"method": "GET", "path": "/api/users/{id}", "body": {"id": "{id}"}, "headers": {"X-Mock": "yes"}},
    {"method": "GET", "path": "/ws/echo", "websocket": "echo"},
]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_and_plugin_lifespans_exit(tmp_path: Path, sig: int) -> None:
    config = write_config(tmp_path, {"routes": ROUTES, "plugins": {"probe": {"out": "exit.json"}}})
    with run_host(config, env=probe_env(tmp_path)) as host:
        r = httpx.get(host.url + "/api/users/5")
        assert r.status_code == 200 and r.json() == {"id": "5"} and r.headers["x-mock"] == "yes"
        code = host.stop(sig)
        assert host.stop(sig) == code  # idempotent
    assert code == 0, host.stderr()
    assert "Traceback" not in host.stderr()
    written = json.loads((tmp_path / "exit.json").read_text())
    assert written["exited"] is True
    assert [s["path"] for s in written["seen"] if s["path"].startswith("/api")] == ["/api/users/5"]


def test_served_metrics_and_plugins_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"routes": ROUTES})
    with run_host(config) as host:
        for i in range(4):
            httpx.get(f"{host.url}/api/users/{i}")
        httpx.get(host.url + "/nothing/here")
        text = httpx.get(host.url + "/metrics").text
        doc = httpx.get(host.url + "/__mockforge/plugins.json").json()
    by_path = {
        (labels["path"], labels["status"]): v
        for labels, v in counts(text, "mockforge_requests_by_path_total")
    }
    assert by_path[("/api/users/{id}", "200")] == 4
    assert by_path[("__unmatched__", "404")] == 1
    names = [p["name"] for p in doc["plugins"]]
    assert names[:2] == ["metrics", "introspection"]


def run_serve(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `example-host serve` expecting it to fail at start-up."""
    cmd = [default_executable(), "serve", "--config", str(config), "--port", str(free_port())]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})}, check=False
    )


CONFIG_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown key", {"routes": [], "sever": {}}, "error: sever: unknown key (allowed: "),
    ("wrong type", {"workspace": ["a"]}, "error: workspace: must be a string, got a list"),
    ("missing method", {"routes": [{"path": "/a"}]}, "error: routes[0].method: missing"),
    (
        "bad path template",
        {"routes": [{"method": "GET", "path": "/a/{id"}]},
        "error: routes[0].path: bad path template '/a/{id'",
    ),
    (
        "status out of range",
        {"routes": [{"method": "GET", "path": "/a", "status": 99}]},
        "error: routes[0].status: must be between 100 and 599, got 99",
    ),
    (
        "plugin not installed",
        {"plugins": {"nosuch": {}}},
        "error: plugin 'nosuch' is named in config but not installed (installed: ",
    ),
    (
        "plugin configure fails",
        {"plugins": {"probe": {"bad_key": 1}}},
        "error: plugin 'probe': bad_key: must not be set",
    ),
]


@pytest.mark.parametrize(("what", "data", "message"), CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors_print_one_line_and_exit_2(
    tmp_path: Path, what: str, data: dict[str, Any], message: str
) -> None:
    config = write_config(tmp_path, data)
    result = run_serve(config, env=probe_env(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message), lines[0]
    assert "Traceback" not in result.stderr
    if what == "plugin not installed":
        assert "probe" in lines[0]  # the installed list names what is there


def test_plugin_lifespan_failing_at_start_exits_3(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"plugins": {"probe": {"fail_start": True}}})
    result = run_serve(config, env=probe_env(tmp_path))
    assert result.returncode == 3, result.stderr
    assert "probe could not start" in result.stderr


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [\n")
    result = run_serve(bad)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    result = run_serve(tmp_path / "nope.yaml")
    assert result.returncode == 2 and "cannot read config file" in result.stderr


def test_plugins_command_and_version(tmp_path: Path) -> None:
    exe = default_executable()
    env = {**os.environ, **probe_env(tmp_path)}
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == "example-host 0.1.0"
    listing = subprocess.run([exe, "plugins"], capture_output=True, text=True, env=env, check=True).stdout
    assert "metrics 0.1.0  on (built in)" in listing
    assert "probe 0.0.1  off (no --config given)" in listing
    assert "analytics 0.1.0" in listing
    config = write_config(tmp_path, {"plugins": {"probe": {}}})
    out = subprocess.run(
        [exe, "plugins", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    by_name = {p["name"]: p for p in json.loads(out)}
    assert by_name["probe"]["enabled"] is True
    assert by_name["probe"]["hooks"] == ["mockforge_configure", "mockforge_lifespan", "mockforge_middleware"]
    assert by_name["analytics"]["enabled"] is False
    bad = write_config(tmp_path, {"plugins": {"nosuch": {}}}, name="bad.yaml")
    result = subprocess.run([exe, "plugins", "--config", str(bad)], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and result.stderr.startswith("error: plugin 'nosuch' is named in config")


def test_demo_traffic_sends_every_kind_of_request(tmp_path: Path) -> None:
    demo = yaml.safe_load((REPO / "example_host" / "demo.yaml").read_text())
    demo["plugins"] = {"probe": {"out": "probe.json"}}  # the analytics plugin is tested elsewhere
    config = write_config(tmp_path, demo)

    def kinds(text: str) -> dict[str, bool]:
        by_path = counts(text, "mockforge_requests_by_path_total")
        statuses = {int(labels["status"]) for labels, _ in by_path}
        templates = {labels["path"] for labels, _ in by_path if labels["path"].startswith("/api/")}
        protocols = {labels["protocol"] for labels, _ in by_path}
        return {
            "websocket": "websocket" in protocols,
            "graphql": "graphql" in protocols,
            "4xx": any(400 <= s < 500 for s in statuses),
            "5xx": any(s >= 500 for s in statuses),
            "unmatched": any(labels["path"] == "__unmatched__" for labels, _ in by_path),
            "raised": any(
                labels["path"] == "/api/crash" and labels["status"] == "500" for labels, _ in by_path
            ),
            "several routes": len(templates) >= 5,
        }

    with run_host(config, args=("--demo-traffic",), env=probe_env(tmp_path)) as host:
        deadline = time.monotonic() + 25
        seen: dict[str, bool] = {}
        while time.monotonic() < deadline:
            seen = kinds(httpx.get(host.url + "/metrics").text)
            if all(seen.values()):
                break
            time.sleep(0.5)
        assert all(seen.values()), seen
        assert host.stop() == 0, host.stderr()
    requests = json.loads((tmp_path / "probe.json").read_text())["seen"]
    demo_requests = [r for r in requests if r["client"]]
    assert len({r["client"] for r in demo_requests}) >= 4
    agents = " ".join({r["ua"] for r in demo_requests})
    for family in ("curl/", "python-httpx/", "Chrome/", "Go-http-client/"):
        assert family in agents
    assert {r["run"] for r in demo_requests} == {"run-a", "run-b"}
    assert any(r["traceparent"] and r["traceparent"].startswith("00-") for r in demo_requests)
    assert any(r["type"] == "websocket" for r in demo_requests)
    assert any(r["path"] == "/graphql" and r["method"] == "POST" for r in demo_requests)
    # unmatched paths carry UUIDs and numeric ids (analytics must not explode on them)
    assert any(re.fullmatch(r"/api/invoices/[0-9a-f-]{36}", r["path"]) for r in demo_requests)
    assert any(re.fullmatch(r"/api/items/[0-9]+", r["path"]) for r in demo_requests)
