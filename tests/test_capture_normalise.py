"""Path normalisation and client info (client id resolution, user-agent families)."""

from __future__ import annotations

import pytest

from mockforge_analytics_plugin.clientinfo import TrustedProxies, parse_user_agent, resolve_client_id
from mockforge_analytics_plugin.normalise import MAX_SEGMENTS, normalise_path


@pytest.mark.parametrize(
    ("raw", "template"),
    [
        ("/", "/"),
        ("", "/"),
        ("//api//users/", "/api/users"),
        ("/api/users/42", "/api/users/{id}"),
        ("/api/users/-7/orders/3.25", "/api/users/{id}/orders/{id}"),
        ("/u/123e4567-e89b-12d3-a456-426614174000", "/u/{id}"),
        ("/u/123E4567E89B12D3A456426614174000", "/u/{id}"),
        ("/blob/deadbeefdeadbeef", "/blob/{id}"),
        ("/blob/deadbeef", "/blob/deadbeef"),  # short hex reads as a word
        ("/u/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/u/{id}"),
        ("/t/eyJhbGciOiJIUzI1NiJ9", "/t/{id}"),
        ("/c/cus_J8k3fT9aQ1xYz", "/c/{id}"),
        ("/m/bob@example.com", "/m/{id}"),
        ("/v1/api-v2-users-v3-list", "/v1/api-v2-users-v3-list"),
        ("/static/app.min.js", "/static/app.min.js"),
        ("/health", "/health"),
        ("/a/" + "x" * 65, "/a/{id}"),
    ],
)
def test_normalise_path(raw: str, template: str) -> None:
    assert normalise_path(raw) == template


def test_normalise_caps_segments_and_length() -> None:
    deep = "/" + "/".join(f"s{i}x" for i in range(100))
    out = normalise_path(deep)
    assert out.count("/") == MAX_SEGMENTS + 1 and out.endswith("/{...}")
    huge = "/a" * 1_000_000
    assert len(normalise_path(huge)) < 256


def test_client_id_header_wins() -> None:
    trusted = TrustedProxies(["10.0.0.1"])
    assert resolve_client_id("10.0.0.1", " team-a ", "1.2.3.4", trusted) == "team-a"
    assert resolve_client_id("10.0.0.1", "x" * 1000, None, trusted) == "x" * 256


def test_forwarded_for_only_from_trusted_peer() -> None:
    trusted = TrustedProxies(["10.0.0.1", "192.168.0.0/16"])
    # Untrusted peer: its X-Forwarded-For is ignored.
    assert resolve_client_id("8.8.8.8", None, "1.2.3.4", trusted) == "8.8.8.8"
    # Trusted peer: the nearest untrusted hop is the client; hops left of it may be forged.
    assert resolve_client_id("10.0.0.1", None, "6.6.6.6, 1.2.3.4", trusted) == "1.2.3.4"
    assert resolve_client_id("10.0.0.1", None, "1.2.3.4, 192.168.3.3", trusted) == "1.2.3.4"
    # Every hop trusted: the left-most one.
    assert resolve_client_id("10.0.0.1", None, "192.168.1.1, 10.0.0.1", trusted) == "192.168.1.1"
    assert resolve_client_id("10.0.0.1", None, " , ", trusted) == "10.0.0.1"
    # No proxies configured: never believed.
    assert resolve_client_id("10.0.0.1", None, "1.2.3.4", TrustedProxies([])) == "10.0.0.1"
    assert not TrustedProxies([]) and TrustedProxies(["::1"]).contains("::1")
    assert not trusted.contains("not-an-ip")


@pytest.mark.parametrize(
    ("ua", "family", "version"),
    [
        ("curl/8.5.0", "curl", "8.5.0"),
        ("python-httpx/0.27.0", "python-httpx", "0.27.0"),
        ("python-requests/2.31.0", "python-requests", "2.31.0"),
        ("Go-http-client/1.1", "Go-http-client", "1.1"),
        ("okhttp/4.12.0", "okhttp", "4.12.0"),
        ("PostmanRuntime/7.36.0", "PostmanRuntime", "7.36.0"),
        ("k6/0.49.0 (https://k6.io/)", "k6", "0.49.0"),
        ("wrk", "wrk", ""),
        (
            "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            "Edge",
            "120.0.2210.91",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36",
            "Chrome",
            "120.0.0.0",
        ),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox", "121.0"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.2 Safari/605.1.15",
            "Safari",
            "17.2",
        ),
        ("my-tool/1.0", "other", ""),
        ("", "", ""),
    ],
)
def test_parse_user_agent(ua: str, family: str, version: str) -> None:
    assert parse_user_agent(ua) == (family, version)
