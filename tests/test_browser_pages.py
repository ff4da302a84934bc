"""The dashboard in a real browser (Debian's Chromium through Playwright) against the real host process.

One host (example-host with the analytics plugin, on a free 127.0.0.1 port) and one browser serve
the whole module; each test sends its own known traffic and reads the figures back from the API.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from support.hostproc import run_host, write_config

from mockforge_analytics_plugin.charts import format_value

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
PAGES = {
    "overview": "/",
    "endpoints": "/endpoints",
    "endpoint": "/endpoint?endpoint=/api/users/{id}&method=GET",
    "errors": "/errors",
    "clients": "/clients",
    "requests": "/requests",
}
EVIL_PATH = "/<script>alert(1)</script>"
EVIL_UA = "<img src=x onerror=alert(2)><b>bold agent</b>"

if not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)) and not os.environ.get("CI"):
    pytest.skip(
        "chromium is not installed (CI installs it; set CI to make this a failure)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api") if not os.environ.get("CI") else None
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser-host")
    config = write_config(
        tmp,
        {
            "routes": [
                {"method": "GET", "path": "/api/users/{id}", "status": 200, "body": {"id": "{id}"}},
                {"method": "GET", "path": "/boom", "status": 500, "body": "boom"},
            ],
            "plugins": {"analytics": {"database_path": str(tmp / "analytics.db"), "mount_path": "/stats"}},
        },
    )
    with run_host(config) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, host):
    """A fresh page that records console errors, dialogs and every request it makes."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.console_errors = []  # type: ignore[attr-defined]
    pg.dialogs = []  # type: ignore[attr-defined]
    pg.requested = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    pg.on("pageerror", lambda exc: pg.console_errors.append(str(exc)))
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on("request", lambda r: pg.requested.append(r.url))
    context.on("websocket", lambda ws: pg.requested.append(ws.url))
    yield pg
    context.close()


def _api(host, route: str, **params: str) -> dict:
    r = httpx.get(f"{host.url}/stats/api/{route}", params=params, timeout=5)
    r.raise_for_status()
    return r.json()["data"]


def _send(host, n_ok: int, n_fail: int, **headers: str) -> None:
    with httpx.Client(base_url=host.url, timeout=5) as c:
        for i in range(n_ok):
            c.get(f"/api/users/{i}", headers=headers)
        for _ in range(n_fail):
            c.get("/boom", headers=headers)


def _wait_total(host, at_least: int, timeout: float = 5.0, **params: str) -> dict:
    """Poll the overview until the flush has stored at least `at_least` requests."""
    deadline = time.monotonic() + timeout
    while True:
        data = _api(host, "overview", **params)
        if data["total_requests"] >= at_least or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


def _card(pg: Page, metric: str) -> str:
    return pg.locator(f"output[data-metric={metric}]").inner_text()


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _local_only(pg: Page, host) -> None:
    netloc = urlsplit(host.url).netloc
    for url in pg.requested:
        if url.startswith("data:"):
            continue
        assert urlsplit(url).netloc == netloc, url


def test_cards_show_the_api_numbers(host, page):
    before = _api(host, "overview")["total_requests"]
    _send(host, 8, 2)
    api = _wait_total(host, before + 10)
    page.goto(f"{host.url}/stats/")
    expect(page.locator("h1")).to_have_text("Overview")
    assert _card(page, "total_requests") == _fmt_int(api["total_requests"])
    assert _card(page, "unique_clients") == _fmt_int(api["unique_clients"])
    assert _card(page, "error_rate") == format_value(api["error_rate"], "%")
    assert _card(page, "p95_latency_ms") == format_value(api["p95_latency_ms"], "ms")
    assert page.console_errors == []
    _local_only(page, host)


def test_changing_a_filter_changes_the_url_and_the_numbers(host, page):
    before = _api(host, "overview", status_code="5xx")["total_requests"]
    _send(host, 3, 2)
    fails = _wait_total(host, before + 2, status_code="5xx")["total_requests"]
    page.goto(f"{host.url}/stats/")
    page.fill("input[name=status_code]", "5xx")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"status_code=5xx"))
    assert parse_qs(urlsplit(page.url).query) == {
        "status_code": ["5xx"],
        "duration": ["3600"],
        "granularity": ["auto"],
    }  # blanks left out
    assert _card(page, "total_requests") == _fmt_int(fails)
    assert _card(page, "error_rate") == "100%"
    assert page.console_errors == []


def test_export_button_downloads_a_csv_that_sums_right(host, page):
    before = _api(host, "overview")["total_requests"]
    _send(host, 4, 1)
    _wait_total(host, before + 5)
    page.goto(f"{host.url}/stats/")
    shown = int(_card(page, "total_requests").replace(",", ""))
    with page.expect_download() as info:
        page.click("text=Export CSV")
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert sum(int(r["request_count"]) for r in rows) == shown
    assert sum(int(r["error_count"]) for r in rows) == int(_api(host, "overview")["total_errors"])


def test_more_traffic_updates_a_card_within_3_s_without_reload(host, page):
    page.goto(f"{host.url}/stats/")
    expect(page.locator("#live-state")).to_have_text("live", timeout=5000)
    page.evaluate("window.__marker = 'same page'; document.getElementById('charts').dataset.old = '1'")
    before = int(_card(page, "total_requests").replace(",", ""))
    _send(host, 5, 0)
    total = page.locator("output[data-metric=total_requests]")
    expect(total).not_to_have_text(_fmt_int(before), timeout=3000)
    assert page.evaluate("window.__marker") == "same page"  # no reload happened
    assert int(_card(page, "total_requests").replace(",", "")) >= before + 1
    # the server-drawn charts are re-fetched and swapped in as well
    page.wait_for_function("!document.getElementById('charts').dataset.old", timeout=6000)
    assert page.evaluate("window.__marker") == "same page"
    # pause: no more updates until resumed
    page.click("#live-toggle")
    expect(page.locator("#live-state")).to_have_text("paused")
    paused_at = _card(page, "total_requests")
    _send(host, 3, 0)
    page.wait_for_timeout(2500)
    assert _card(page, "total_requests") == paused_at
    page.click("#live-toggle")
    expect(total).not_to_have_text(paused_at, timeout=3000)
    assert page.console_errors == []


def test_live_state_shows_reconnecting_with_doubling_backoff(host, page):
    attempts: list[float] = []

    def refuse(ws):  # answer as the server would, then drop the socket at once
        attempts.append(time.monotonic())
        ws.close(code=1011, reason="test")

    page.route_web_socket(re.compile(r"/stats/api/stream"), refuse)
    page.goto(f"{host.url}/stats/")
    state = page.locator("#live-state")
    expect(state).to_have_text("reconnecting in 1 s", timeout=3000)
    expect(state).to_have_text("reconnecting in 2 s", timeout=3000)
    expect(state).to_have_text("reconnecting in 4 s", timeout=4000)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(gaps) >= 2 and 0.8 < gaps[0] < 1.8 and 1.8 < gaps[1] < 2.8, gaps


def test_hostile_paths_and_user_agents_show_as_text(host, page):
    before = _api(host, "overview", status_code="404")["total_requests"]
    with httpx.Client(base_url=host.url, timeout=5) as c:
        c.get(EVIL_PATH, headers={"User-Agent": EVIL_UA})
    _wait_total(host, before + 1, status_code="404")
    for path in ("/requests", "/errors", "/"):
        page.goto(f"{host.url}/stats{path}")
        expect(page.get_by_text("<script>alert(1)</script>").first).to_be_visible()
    page.goto(f"{host.url}/stats/requests")
    expect(page.get_by_text(EVIL_UA).first).to_be_visible()
    assert page.locator("main img, main b").count() == 0
    page.wait_for_timeout(300)
    assert page.dialogs == []
    assert page.console_errors == []
    _local_only(page, host)


def _png_stats(pg: Page, png: bytes) -> dict:
    """Decode a PNG in the browser (about:blank, no CSP) and measure its pixels."""
    data = "data:image/png;base64," + base64.b64encode(png).decode()
    return pg.evaluate(
        """async (src) => {
            const img = new Image(); img.src = src; await img.decode();
            const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            let n = 0, sum = 0, sq = 0;
            for (let i = 0; i < d.length; i += 4 * 7) {
                const v = (d[i] + d[i + 1] + d[i + 2]) / 3; n++; sum += v; sq += v * v;
            }
            const mean = sum / n;
            return {width: img.width, height: img.height, variance: sq / n - mean * mean};
        }""",
        data,
    )


@pytest.mark.parametrize("width", [1280, 390])
def test_screenshots_of_every_page_are_saved_and_not_blank(host, browser, width):
    _send(host, 2, 1)
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": width, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: m.type == "error" and errors.append(m.text))
    pg.requested = []  # type: ignore[attr-defined]
    pg.on("request", lambda r: pg.requested.append(r.url))
    try:
        for name, path in PAGES.items():
            pg.goto(f"{host.url}/stats{path}")
            expect(pg.locator("h1")).to_be_visible()
            scroll_width = pg.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= width + 1, f"{name} overflows {width} px: {scroll_width}"
            target = SHOTS / f"{name}-{width}.png"
            png = pg.screenshot(path=str(target), full_page=True)
            assert target.stat().st_size > 5000
            checker = context.new_page()
            stats = _png_stats(checker, png)
            checker.close()
            assert stats["width"] == width
            assert stats["variance"] > 50, f"{name} at {width} px looks blank: {stats}"
        assert errors == []
        _local_only(pg, host)
    finally:
        context.close()


def test_pages_read_fine_with_javascript_off(host, browser):
    _send(host, 1, 0)
    context = browser.new_context(java_script_enabled=False)
    pg = context.new_page()
    try:
        pg.goto(f"{host.url}/stats/")
        assert int(pg.locator("output[data-metric=total_requests]").inner_text().replace(",", "")) > 0
        assert pg.locator("svg.line-chart").count() == 2
        assert pg.locator("svg.heatmap g.cell").count() == 168
        assert pg.locator("#live").is_hidden()
        pg.click("nav >> text=Endpoints")
        expect(pg.locator("h1")).to_have_text("Endpoints")
    finally:
        context.close()


TOKEN = "s3cret-token-0123456789"


def test_with_auth_on_the_pages_show_the_login_form_and_then_work(tmp_path, browser):
    config = write_config(
        tmp_path,
        {
            "routes": [{"method": "GET", "path": "/ok", "status": 200, "body": "ok"}],
            "plugins": {"analytics": {"database_path": str(tmp_path / "a.db"), "auth": {"token": TOKEN}}},
        },
    )
    with run_host(config) as proc:
        httpx.get(proc.url + "/ok", timeout=5)
        context = browser.new_context()
        pg = context.new_page()
        errors: list[str] = []
        pg.on("console", lambda m: m.type == "error" and errors.append(m.text))
        try:
            pg.goto(f"{proc.url}/analytics/errors")
            expect(pg.locator("h2#login-h")).to_be_visible()
            pg.fill("input[name=token]", "wrong")
            pg.click("form button[type=submit]")
            expect(pg.locator("[role=alert]")).to_contain_text("wrong credentials")
            pg.fill("input[name=token]", TOKEN)
            pg.click("form button[type=submit]")
            expect(pg.locator("h1")).to_have_text("Errors")  # back where the user was going
            pg.click("nav >> text=Overview")
            expect(pg.locator("#live-state")).to_have_text("live", timeout=5000)
            assert errors == [e for e in errors if "401" in e]  # only the refused wrong login
        finally:
            context.close()


def test_requests_log_fills_live_from_empty_without_reload(host, page):
    run = f"live-{time.monotonic_ns()}"
    page.goto(f"{host.url}/stats/requests?test_run={run}")
    expect(page.locator("#recent-panel")).to_contain_text("No traffic yet")
    expect(page.locator("#live-state")).to_have_text("live", timeout=5000)
    page.evaluate("window.__marker = 'same page'")
    _send(host, 2, 1, **{"X-Test-Run": run})
    expect(page.locator("#recent-panel tbody tr")).to_have_count(3, timeout=6000)
    expect(page.locator("#recent-panel")).to_contain_text("/boom")
    assert page.evaluate("window.__marker") == "same page"
    assert page.console_errors == []
