"""Pages render in process: every page with data and empty, errors, escaping, mount path, filters."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from pages_host import EVIL_CLIENT, EVIL_PATH, EVIL_UA, make_host, send_known_traffic

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


@pytest.fixture
async def host(tmp_path):
    h = await make_host(tmp_path)
    await send_known_traffic(h)
    await h.flush()
    yield h
    await h.close()


@pytest.fixture
async def empty_host(tmp_path):
    h = await make_host(tmp_path)
    yield h
    await h.close()


@pytest.fixture
async def stats_host(tmp_path):
    h = await make_host(tmp_path, mount="/stats")
    await send_known_traffic(h)
    await h.flush()
    yield h
    await h.close()


@pytest.mark.parametrize("page", PAGES)
async def test_every_page_renders_with_data(host, page):
    r = await host.client.get("/analytics" + page)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "<h1>" in r.text and '<form class="filters"' in r.text
    assert "Traceback" not in r.text and "No traffic yet" not in r.text


EMPTY_HINTS = {  # each page's own empty state, and what it tells the user to do
    "/": ("No traffic yet in this window.", "curl http://"),
    "/endpoints": ("No traffic yet in this window.", "curl http://"),
    "/endpoint?endpoint=/api/users/{id}&method=GET": (
        "No requests to this endpoint in this window.",
        "curl -X GET http://",
    ),
    "/errors": ("No errors in this window.", "status 400 or above"),
    "/clients": ("No traffic yet in this window.", "curl http://"),
    "/requests": ("No traffic yet in this window.", "curl http://"),
}


@pytest.mark.parametrize("page", PAGES)
async def test_every_page_renders_empty_with_a_hint(empty_host, page):
    r = await empty_host.client.get("/analytics" + page)
    assert r.status_code == 200
    message, hint = EMPTY_HINTS[page]
    assert message in r.text and hint in r.text


async def test_overview_cards_show_the_recorded_numbers_with_threshold_colours(host):
    html = (await host.page("/")).text
    levels = {m[1]: m[0] for m in re.findall(r'<div class="card (\w*)" data-card="(\w+)"', html)}
    values = dict(re.findall(r'<output data-metric="(\w+)" data-unit="[^"]*">([^<]*)</output>', html))
    assert values["total_requests"] == "13"
    assert values["error_rate"] == "23.1%"  # 3 of 13
    assert values["unique_clients"] == "3"
    assert levels["error_rate"] == "bad"
    assert levels["avg_latency_ms"] == "good"  # in-process handlers answer in well under 50 ms
    assert levels["p95_latency_ms"] == "good"
    assert '<h2 id="top-h">Top endpoints</h2>' in html and "/api/users/{id}" in html


async def test_empty_overview_shows_no_latency_figures(empty_host):
    html = (await empty_host.page("/")).text
    assert '<output data-metric="avg_latency_ms" data-unit="ms">\u2013</output>' in html
    assert '<output data-metric="total_requests" data-unit="">0</output>' in html


async def test_bad_parameter_renders_an_error_state_naming_it(host):
    r = await host.page("/", duration="abc")
    assert r.status_code == 400
    assert "Bad parameter: <code>duration</code>" in r.text
    assert "expected a number of seconds" in r.text


async def test_client_filter_is_refused_where_it_does_not_apply_and_applies_where_it_does(host):
    r = await host.page("/", client="bob")
    assert r.status_code == 400 and "<code>client</code>" in r.text
    html = (await host.page("/requests", client="bob")).text
    assert html.count("<code>/boom</code>") == 2 and "<code>/api/users/" not in html
    html = (await host.page("/errors", client="bob")).text
    assert "alert" not in html.replace("&lt;", "")  # the 404 of the other client is filtered out


async def test_endpoint_detail_requires_endpoint_and_method(host):
    r = await host.page("/endpoint", endpoint="/x")
    assert r.status_code == 400 and "<code>method</code>" in r.text


async def test_endpoint_detail_shows_its_clients_and_errors(host):
    html = (await host.page("/endpoint", endpoint="/boom", method="GET")).text
    assert "<h1>GET /boom</h1>" in html
    assert "<code>bob</code>" in html and "<code>alice</code>" not in html
    assert html.count("HTTP 500") == 2


def _client_counts(html: str) -> dict[str, str]:
    panel = html.split('<h2 id="cl-h">Clients</h2>', 1)[1].split("</section>", 1)[0]
    row = r'<code>([^<]*)</code></th><td class="ua">[^<]*</td><td class="num">([^<]*)</td>'
    return dict(re.findall(row, panel))


async def test_endpoint_detail_counts_each_clients_requests_to_that_endpoint(host):
    # Exact template, a glob, and a method the endpoint was never called with.
    exact = (await host.page("/endpoint", endpoint="/api/users/{id}", method="GET")).text
    assert _client_counts(exact) == {"alice": "10"}
    glob = (await host.page("/endpoint", endpoint="/api/*", method="GET")).text
    assert _client_counts(glob) == {"alice": "10"}
    boom = (await host.page("/endpoint", endpoint="/boom", method="GET")).text
    assert _client_counts(boom) == {"bob": "2"}
    post = (await host.page("/endpoint", endpoint="/boom", method="POST")).text
    assert _client_counts(post) == {} and "No client data for this endpoint" in post
    assert "client rows do not record" not in boom
    # A status filter cannot narrow client rows: the panel says so instead of ignoring it.
    only_500 = (await host.page("/endpoint", endpoint="/boom", method="GET", status_code="500")).text
    assert _client_counts(only_500) == {"bob": "2"}
    assert "Counts include every status_code: client rows do not record it." in only_500


async def test_store_unavailable_is_an_error_state_not_a_traceback(host):
    host.runtime.store.closed = True
    r = await host.page("/")
    host.runtime.store.closed = False
    assert r.status_code == 503
    assert "store is not open" in r.text and "Traceback" not in r.text


async def test_request_text_is_escaped_everywhere(host):
    for page in [*PAGES, "/endpoint?endpoint=/{path:path}&method=GET"]:
        html = (await host.client.get("/analytics" + page)).text
        assert "<script>alert(1)</script>" not in html
        assert "<img src=x" not in html and "<b>client</b>" not in html
    html = (await host.page("/requests")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert "&lt;b&gt;client&lt;/b&gt;" in html
    assert EVIL_PATH and EVIL_UA and EVIL_CLIENT


async def test_escaped_filter_values_round_trip(host):
    evil = '"><script>alert(1)</script>'
    r = await host.page("/errors", endpoint=evil)
    assert "<script>alert(1)</script>" not in r.text
    parser = Links()
    parser.feed(r.text)
    assert parser.inputs["endpoint"] == evil


@pytest.mark.parametrize("page", PAGES)
async def test_every_link_follows_mount_path(stats_host, page):
    r = await stats_host.client.get("/stats" + page)
    assert r.status_code == 200
    parser = Links()
    parser.feed(r.text)
    local = [u for u in parser.urls if not u.startswith(("#", "data:"))]
    assert local, "no links found"
    assert all(u.startswith(("/stats/", "/stats?")) for u in local), local
    assert 'data-ws-path="/stats/api/stream"' in r.text
    assert "/analytics" not in r.text
    assert not re.search(r"""(href|src|action)=["']?(https?:)?//""", r.text)


async def test_filter_state_round_trips_in_the_url(host):
    query = {"duration": "21600", "granularity": "minute", "protocol": "http", "method": "GET",
             "endpoint": "/api/*", "status_code": "2xx", "workspace_id": "", "environment": "",
             "test_run": ""}  # fmt: skip
    r = await host.page("/", **query)
    assert r.status_code == 200, r.text
    set_query = {k: v for k, v in query.items() if v}
    parser = Links()
    parser.feed(r.text)
    assert parser.selected["duration"] == "21600"
    assert "<option selected>minute</option>" in r.text
    assert "<option selected>http</option>" in r.text and "<option selected>GET</option>" in r.text
    for name in ("endpoint", "status_code"):
        assert parser.inputs[name] == query[name]
    values = dict(re.findall(r'<output data-metric="(\w+)" data-unit="[^"]*">([^<]*)</output>', r.text))
    assert values["total_requests"] == "10"  # only the 2xx under /api/*
    # nav links carry what their page accepts; export links carry the filter to the API
    nav = next(u for u in parser.urls if u.startswith("/analytics/errors?"))
    assert {k: v[0] for k, v in parse_qs(urlsplit(nav).query).items()} == {
        k: v for k, v in set_query.items() if k != "granularity"
    }
    csv = next(u for u in parser.urls if "/api/export/csv" in u)
    got = {k: v[0] for k, v in parse_qs(urlsplit(csv).query).items()}
    assert got == {**set_query, "dataset": "metrics"}


class FormFields(HTMLParser):
    """What a browser would submit from the filter form: enabled inputs and selected options."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._in_form = False
        self._select: tuple[str, list[tuple[str, bool]]] | None = None
        self._option: tuple[str | None, bool] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("class") == "filters":
            self._in_form = True
        if not self._in_form or "disabled" in a:
            return
        if tag == "input" and a.get("name"):
            self.fields.append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self._select = (a["name"], [])
        elif tag == "option" and self._select is not None:
            self._option = (a.get("value"), "selected" in a)

    def handle_data(self, data):
        if self._option is not None and self._select is not None:
            value, selected = self._option
            self._select[1].append((data if value is None else value, selected))
            self._option = None

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        if tag == "select" and self._select is not None:
            name, options = self._select
            chosen = next((v for v, sel in options if sel), options[0][0] if options else "")
            self.fields.append((name, chosen))
            self._select = None


@pytest.mark.parametrize("page", PAGES)
async def test_submitting_the_filter_form_as_is_keeps_the_page_working(host, page):
    html = (await host.client.get("/analytics" + page)).text
    form = FormFields()
    form.feed(html)
    assert form.fields
    action = re.search(r'<form class="filters" method="get" action="([^"]+)"', html).group(1)
    r = await host.client.get(action, params=form.fields)
    assert r.status_code == 200, (form.fields, r.text[-600:])
    again = FormFields()
    again.feed(r.text)
    assert again.fields == form.fields  # the state survives the round trip


async def test_filter_summary_names_the_active_filters(host):
    html = (await host.page("/", status_code="5xx", protocol="http", duration="900")).text
    assert '<span class="muted">· status_code 5xx, protocol http</span>' in html
    assert '<span class="muted">' not in (await host.page("/", duration="900")).text


async def test_filters_a_page_does_not_use_are_disabled_in_its_bar(host):
    html = (await host.page("/clients")).text
    assert re.search(r'<input name="client" value=""[^>]*>', html).group(0).find("disabled") == -1
    assert 'name="endpoint" value="" placeholder="/api/users/{id} or /api/*" disabled' in html
    assert '<select name="granularity" disabled' in html


async def test_blank_form_fields_are_ignored_and_reset_clears(host):
    r = await host.page("/", duration="900", protocol="", method="", endpoint="", client="")
    assert r.status_code == 200
    assert 'href="/analytics/">Reset</a>' in r.text


async def test_endpoints_table_sorts_by_column(host):
    def first_row(html: str) -> str:
        return re.search(r"<tbody>.*?<code>(.*?)</code>", html, re.S).group(1)

    assert first_row((await host.page("/endpoints", sort="requests", order="asc")).text) == "/{path:path}"
    html = (await host.page("/endpoints", sort="requests")).text
    assert first_row(html) == "/api/users/{id}"
    assert 'aria-sort="descending"' in html
    assert first_row((await host.page("/endpoints", sort="endpoint")).text) == "/api/users/{id}"
    assert first_row((await host.page("/endpoints", sort="errors")).text) == "/boom"
    assert (await host.page("/endpoints", sort="bogus")).status_code == 400
    r = await host.page("/endpoints", order="sideways")
    assert r.status_code == 400 and "<code>order</code>" in r.text


EXPORT_PAGES = ["/", "/endpoints", "/errors", "/clients", "/endpoint?endpoint=/boom&method=GET"]


@pytest.mark.parametrize("page", EXPORT_PAGES)
async def test_export_links_work_with_the_page_filters(host, page):
    html = (await host.client.get("/analytics" + page, params={"duration": "900", "protocol": "http"})).text
    parser = Links()
    parser.feed(html)
    links = [u for u in parser.urls if "/api/export/" in u]
    assert len(links) == 2
    for url in links:
        r = await host.client.get(url)
        assert r.status_code == 200, (url, r.text)
        assert "attachment" in r.headers["content-disposition"]


async def test_overview_csv_export_sums_to_the_card(host):
    import csv
    import io

    html = (await host.page("/")).text
    parser = Links()
    parser.feed(html)
    url = next(u for u in parser.urls if "/api/export/csv" in u)
    rows = list(csv.DictReader(io.StringIO((await host.client.get(url)).text)))
    assert sum(int(r["request_count"]) for r in rows) == 13
    assert sum(int(r["error_count"]) for r in rows) == 3


async def test_tables_have_captions_and_scoped_headers(host):
    html = (await host.page("/")).text
    assert html.count("<caption") >= 2
    assert '<th scope="col"' in html and '<th scope="row"' in html


@pytest.mark.parametrize(("name", "ctype"), [("app.css", "text/css"), ("live.js", "text/javascript")])
async def test_static_assets_served_with_type_and_cache(stats_host, name, ctype):
    c = stats_host.client
    r = await c.get(f"/stats/static/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(ctype)
    assert "max-age" in r.headers["cache-control"] and r.headers["etag"]
    assert not re.search(r"https?://", r.text)
    again = await c.get(f"/stats/static/{name}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("name", ["../pages.py", "__init__.py", "nope.css", "%2e%2e%2fpages.py"])
async def test_static_refuses_names_outside_the_whitelist(empty_host, name):
    assert (await empty_host.page(f"/static/{name}")).status_code == 404


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


def test_request_chart_keeps_five_busiest_series_and_sums_the_rest():
    from mockforge_analytics_plugin.pagedata import _series_from

    rows = [
        {"label": f"/e{i}", "data": [{"timestamp": 60, "value": 10 - i}, {"timestamp": 120, "value": 1}]}
        for i in range(8)
    ]
    series = _series_from(rows)
    assert [s.label for s in series] == ["/e0", "/e1", "/e2", "/e3", "/e4", "3 others"]
    assert series[-1].points == [(60.0, 5 + 4 + 3), (120.0, 3)]


async def test_overview_group_by_changes_the_request_chart(host):
    html = (await host.page("/", group_by="endpoint")).text
    assert "Request rate by endpoint" in html
    assert 'data-series="/api/users/{id}"' in html and 'data-series="/boom"' in html
    r = await host.page("/", group_by="colour")
    assert r.status_code == 400 and "<code>group_by</code>" in r.text


async def test_overview_shows_each_sources_freshness_failures_and_last_error(host):
    now = host.runtime.clock()
    flush_status = {
        "buffered_requests": 5,
        "dropped": {},
        "last_flush_at": now - 2,
        "last_flush_rows": 3,
        "last_error": "OperationalError: database is locked <b>x</b>",
        "last_error_at": now - 1,
        "failures": 4,
    }
    prom_status = {
        "name": "prometheus",
        "url": "http://prom:9090",
        "last_success_time": None,
        "lag_seconds": None,
        "failures": 2,
        "last_error": {"message": "HTTP 500 from Prometheus", "time": now},
        "percentile_note": "Percentiles pulled from Prometheus are bounded by the bucket layout.",
    }
    host.runtime.flusher = SimpleNamespace(status=lambda: flush_status)
    host.runtime.prometheus = SimpleNamespace(status=lambda: prom_status)
    clock, host.runtime.clock = host.runtime.clock, lambda: now  # the lag is exactly 2 s
    try:
        html = (await host.page("/")).text
    finally:
        del host.runtime.flusher, host.runtime.prometheus
        host.runtime.clock = clock
    panel = html.split('<h2 id="src-h">Data sources</h2>', 1)[1].split("</section>", 1)[0]
    rows = panel.split("<tr>")[2:]
    assert len(rows) == 2 and rows[0].startswith('<th scope="row">middleware')
    assert '<td class="num">2 s</td>' in rows[0] and '<td class="num">4</td>' in rows[0]
    assert "database is locked &lt;b&gt;x&lt;/b&gt;" in rows[0]
    assert "<code>http://prom:9090</code>" in rows[1] and "HTTP 500 from Prometheus" in rows[1]
    assert '<td class="num">2</td>' in rows[1]
    assert "bounded by the bucket layout" in panel


async def test_source_filter_appears_only_with_a_prometheus_source(host):
    import dataclasses

    html = (await host.page("/")).text
    assert 'name="source"' not in html
    original = host.runtime.config
    host.runtime.config = dataclasses.replace(original, prometheus_url="http://127.0.0.1:9")
    try:
        html = (await host.page("/")).text
        assert 'name="source"' in html
        fleet = await host.page("/", source="prometheus")
        assert fleet.status_code == 200 and 'name="source" value="prometheus"' in fleet.text
    finally:
        host.runtime.config = original
