"""envelope: ok/fail shapes, RFC 3339 timestamps, ParamError -> 400, crashes -> 500 without traceback."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from mockforge_analytics_plugin.envelope import api_endpoint, ok, rfc3339
from mockforge_analytics_plugin.params import ParamError


@api_endpoint
async def good(request):
    return ok({"n": 1})


@api_endpoint
async def bad_param(request):
    raise ParamError("limit", "expected an integer from 1 to 10000")


@api_endpoint
async def crash(request):
    raise ZeroDivisionError("secret detail /etc/passwd")


def client():
    return TestClient(
        Starlette(routes=[Route("/good", good), Route("/bad", bad_param), Route("/crash", crash)])
    )


def test_rfc3339():
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"


def test_ok_envelope():
    r = client().get("/good")
    body = r.json()
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert body["success"] is True and body["data"] == {"n": 1} and body["error"] is None
    assert body["timestamp"].endswith("Z")


def test_param_error_is_400_naming_it():
    r = client().get("/bad")
    assert r.status_code == 400
    assert r.json() == {
        **r.json(),
        "success": False,
        "data": None,
        "error": "limit: expected an integer from 1 to 10000",
    }


def test_crash_is_500_without_traceback(caplog):
    with caplog.at_level(logging.ERROR, logger="mockforge.analytics.api"):
        r = client().get("/crash")
    assert r.status_code == 500
    body = r.json()
    assert body["success"] is False and "ZeroDivisionError" in body["error"]
    assert "Traceback" not in r.text and "passwd" not in r.text
    assert any("failed" in rec.message for rec in caplog.records)
