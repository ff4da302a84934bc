"""Pages render in process: every page with data and empty, errors, escaping, mount path, filters."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from mockforge_analytics_plugin.config import AnalyticsConfig
from mockforge_analytics_plugin.pages import page_routes

NOW = 1_764_288_000.0
PAGES = [
    "/",
    "/endpoints",
    "/endpoint?endpoint=/api/users/{id}&method=GET",
    "/errors",
    "/clients",
    "/requests",
]


class Links(HTMLParser):
    """Collects href/src/action attributes and form fields."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inputs: dict[str, str] = {}
        self.selected: dict[str, str] = {}
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("href", "src", "action", "data-ws-path"):
            if a.get(key):
                self.urls.append(a[key])
        if tag == "input" and a.get("name") and a.get("type") != "hidden":
            self.inputs[a["name"]] = a.get("value") or ""
        if tag == "select":
            self._select = a.get("name")
        if tag == "option" and "selected" in a and self._select:
            self.selected[self._select] = a.get("value", "")


def _client(mount: str = "/analytics", empty: bool = False) -> TestClient:
    runtime = SimpleNamespace(
        config=AnalyticsConfig(mount_path=mount), clock=lambda: NOW, version="9.9", sample_empty=empty
    )
    sub = Starlette(routes=page_routes())
    sub.state.runtime = runtime
    return TestClient(Starlette(routes=[Mount(mount, app=sub)]))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_data(page):
    r = _client().get("/analytics" + page)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "<h1>" in r.text and '<form class="filters"' in r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_empty_with_a_hint(page):
    r = _client(empty=True).get("/analytics" + page)
    assert r.status_code == 200
    assert "No " in r.text  # "No traffic yet" / "No errors" / "No requests to this endpoint"
    assert "curl" in r.text or "No errors" in r.text


def test_overview_cards_show_values_and_threshold_colours():
    html = _client().get("/analytics/").text
    cards = dict(re.findall(r'<div class="card (\w*)" data-card="(\w+)"', html)[i][::-1] for i in range(8))
    assert cards["error_rate"] == "warn"  # 2.5 %: between 1 and 5
    assert cards["avg_latency_ms"] == "good"  # 42 ms < 50
    assert cards["p95_latency_ms"] == "warn"  # 180 ms < 500
    assert '<output data-metric="total_requests" data-unit="">1,200</output>' in html


def test_bad_parameter_renders_an_error_state_naming_it():
    r = _client().get("/analytics/?duration=abc")
    assert r.status_code == 400
    assert "Bad parameter: <code>duration</code>" in r.text
    assert "expected a number of seconds" in r.text


def test_client_filter_is_refused_where_it_does_not_apply_and_accepted_where_it_does():
    c = _client()
    r = c.get("/analytics/?client=abc")
    assert r.status_code == 400 and "<code>client</code>" in r.text
    assert c.get("/analytics/requests?client=abc").status_code == 200


def test_endpoint_detail_requires_endpoint_and_method():
    r = _client().get("/analytics/endpoint?endpoint=/x")
    assert r.status_code == 400 and "<code>method</code>" in r.text


def test_request_text_is_escaped_everywhere():
    c = _client()
    for page in PAGES:
        html = c.get("/analytics" + page).text
        assert "<script>alert(1)</script>" not in html
        assert "<img src=x" not in html and "<b>ua</b>" not in html and "<i>x</i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.get("/analytics/requests").text


def test_escaped_filter_values_round_trip():
    evil = '"><script>alert(1)</script>'
    r = _client().get("/analytics/errors", params={"endpoint": evil})
    assert "<script>alert(1)</script>" not in r.text
    parser = Links()
    parser.feed(r.text)
    assert parser.inputs["endpoint"] == evil


@pytest.mark.parametrize("page", PAGES)
def test_every_link_follows_mount_path(page):
    r = _client(mount="/stats").get("/stats" + page)
    assert r.status_code == 200
    parser = Links()
    parser.feed(r.text)
    local = [u for u in parser.urls if not u.startswith("#")]
    assert local, "no links found"
    assert all(u.startswith("/stats/") or u.startswith("/stats?") for u in local), local
    assert 'data-ws-path="/stats/api/stream"' in r.text
    assert "/analytics" not in r.text
    assert not re.search(r"""(href|src|action)=["']?(https?:)?//""", r.text)


def test_filter_state_round_trips_in_the_url():
    query = {
        "duration": "21600",
        "granularity": "minute",
        "protocol": "http",
        "method": "POST",
        "endpoint": "/api/*",
        "status_code": "5xx",
        "workspace_id": "ws1",
        "environment": "dev",
        "test_run": "run-7",
    }
    r = _client().get("/analytics/", params=query)
    assert r.status_code == 200, r.text
    parser = Links()
    parser.feed(r.text)
    assert parser.selected["duration"] == "21600"
    assert parser.selected["granularity"] == ""  # option without value attribute: its text
    assert "selected>minute<" in r.text.replace("<option selected>", "selected>")
    for name in ("endpoint", "status_code", "workspace_id", "environment", "test_run"):
        assert parser.inputs[name] == query[name]
    # nav links carry the filter to the other pages; export links carry it to the API
    nav = next(u for u in parser.urls if u.startswith("/analytics/endpoints?"))
    assert {k: v[0] for k, v in parse_qs(urlsplit(nav).query).items()} == query
    csv = next(u for u in parser.urls if "/api/export/csv" in u)
    got = {k: v[0] for k, v in parse_qs(urlsplit(csv).query).items()}
    assert got == {**query, "dataset": "metrics"}


def test_blank_form_fields_are_ignored_and_reset_clears():
    r = _client().get("/analytics/?duration=900&protocol=&method=&endpoint=&client=")
    assert r.status_code == 200
    assert 'href="/analytics/">Reset</a>' in r.text.replace('class="button secondary" ', "")


def test_endpoints_table_sorts_by_column():
    c = _client()
    html = c.get("/analytics/endpoints?sort=request_count&order=asc").text
    first = re.search(r"<tbody>.*?<code>(.*?)</code>", html, re.S).group(1)
    assert first == "/&lt;script&gt;alert(1)&lt;/script&gt;"  # 3 requests before 900
    html = c.get("/analytics/endpoints?sort=request_count").text
    assert re.search(r"<tbody>.*?<code>(.*?)</code>", html, re.S).group(1) == "/api/users/{id}"
    assert 'aria-sort="descending"' in html
    assert c.get("/analytics/endpoints?sort=bogus").status_code == 400
    assert c.get("/analytics/endpoints?order=sideways").status_code == 400


def test_tables_have_captions_and_scoped_headers():
    html = _client().get("/analytics/").text
    assert html.count("<caption") >= 2
    assert '<th scope="col"' in html and '<th scope="row"' in html


@pytest.mark.parametrize(("name", "ctype"), [("app.css", "text/css"), ("live.js", "text/javascript")])
def test_static_assets_served_with_type_and_cache(name, ctype):
    c = _client(mount="/stats")
    r = c.get(f"/stats/static/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(ctype)
    assert "max-age" in r.headers["cache-control"] and r.headers["etag"]
    assert not re.search(r"https?://", r.text)
    assert c.get(f"/stats/static/{name}", headers={"If-None-Match": r.headers["etag"]}).status_code == 304


@pytest.mark.parametrize("name", ["../pages.py", "__init__.py", "nope.css", "%2e%2e%2fpages.py"])
def test_static_refuses_names_outside_the_whitelist(name):
    assert _client().get(f"/analytics/static/{name}").status_code == 404


def test_templates_reference_no_external_host():
    from importlib import resources

    root = resources.files("mockforge_analytics_plugin.templates")
    for item in [*root.iterdir(), *root.joinpath("static").iterdir()]:
        if item.name.endswith((".html", ".css", ".js")):
            text = item.read_text()
            if item.name.endswith((".css", ".js")):
                assert not re.search(r"https?:", text), item.name
            # HTML: no attribute or CSS url() points at a host (the curl hint is text)
            pattern = r"""(href|src|action)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//"""
            assert not re.search(pattern, text), item.name
            assert "|safe" not in text, item.name
