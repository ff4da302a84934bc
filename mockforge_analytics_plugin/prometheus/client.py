"""Async client for the Prometheus HTTP API: instant and range queries, retries, a short TTL cache."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..config_parse import redact_url

__all__ = [
    "PrometheusClient",
    "PrometheusError",
    "PrometheusHTTPError",
    "PrometheusMalformedResponse",
    "PrometheusQueryError",
    "PrometheusUnreachable",
]


class PrometheusError(Exception):
    """Base of every Prometheus failure; the message names the URL and the query."""

    def __init__(self, message: str, *, url: str, query: str) -> None:
        super().__init__(f"{message} (url={url}, query={query})")
        self.url = url
        self.query = query


class PrometheusUnreachable(PrometheusError):
    """The server could not be reached (connection refused, DNS, timeout) after every retry."""


class PrometheusHTTPError(PrometheusError):
    """The server answered with a non-success HTTP status and no usable error body."""

    def __init__(self, message: str, *, url: str, query: str, status_code: int) -> None:
        super().__init__(message, url=url, query=query)
        self.status_code = status_code


class PrometheusMalformedResponse(PrometheusError):
    """The answer was not the JSON shape the Prometheus API documents."""


class PrometheusQueryError(PrometheusError):
    """Prometheus rejected or failed the query (``status: error`` with errorType/error)."""

    def __init__(self, message: str, *, url: str, query: str, error_type: str, error: str) -> None:
        super().__init__(message, url=url, query=query)
        self.error_type = error_type
        self.error = error


_RESULT_TYPES = {"vector", "matrix", "scalar", "string"}


class PrometheusClient:
    """Query one Prometheus server over its HTTP API (``/api/v1/query`` and ``/api/v1/query_range``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10,
        retries: int = 3,
        backoff: float = 0.2,
        cache_ttl: float = 10,
        transport: httpx.AsyncBaseTransport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # What errors and status show: a password in the URL's user info never leaves the process.
        self.public_url = redact_url(self.base_url) or ""
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.cache_ttl = cache_ttl
        self._monotonic = monotonic
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, dict[str, Any]]] = {}
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)
        self.requests_sent = 0  # HTTP attempts, cache hits excluded (tests and status read it)

    async def aclose(self) -> None:
        """Close the underlying HTTP connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def query(self, expr: str, time: float | None = None) -> dict[str, Any]:
        """Run an instant query; return the ``data`` object (``resultType`` and ``result``)."""
        params = {"query": expr}
        if time is not None:
            params["time"] = _fmt_time(time)
        return await self._get("/api/v1/query", params, expr)

    async def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        """Run a range query evaluated at start, start+step, ... end; return the ``data`` object."""
        params = {
            "query": expr,
            "start": _fmt_time(start),
            "end": _fmt_time(end),
            "step": _fmt_time(step),
        }
        return await self._get("/api/v1/query_range", params, expr)

    # -- internals ----------------------------------------------------------------------------
    async def _get(self, path: str, params: dict[str, str], expr: str) -> dict[str, Any]:
        key = (path, tuple(sorted(params.items())))
        now = self._monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.cache_ttl:
            return hit[1]
        data = await self._fetch(path, params, expr)
        if self.cache_ttl > 0:
            self._evict(now)
            self._cache[key] = (self._monotonic(), data)
        return data

    def _evict(self, now: float) -> None:
        # Keep the cache from growing without bound: drop expired entries on every write.
        for key in [k for k, (t, _) in self._cache.items() if now - t >= self.cache_ttl]:
            del self._cache[key]

    async def _fetch(self, path: str, params: dict[str, str], expr: str) -> dict[str, Any]:
        url = self.public_url + path
        attempt = 0
        while True:
            try:
                self.requests_sent += 1
                response = await self._http.get(path, params=params)
            except httpx.TimeoutException as exc:
                failure: PrometheusError = PrometheusUnreachable(
                    f"Prometheus timed out after {self.timeout} s ({type(exc).__name__})", url=url, query=expr
                )
            except httpx.TransportError as exc:
                failure = PrometheusUnreachable(
                    f"Prometheus unreachable: {type(exc).__name__}: {exc}", url=url, query=expr
                )
            else:
                if response.status_code < 500:
                    return _parse(response, url, expr)
                failure = _http_failure(response, url, expr)
            # Connect errors, timeouts and 5xx are transient: retry with exponential backoff.
            if attempt >= self.retries:
                raise failure
            await asyncio.sleep(self.backoff * (2**attempt))
            attempt += 1


def _fmt_time(value: float) -> str:
    return repr(float(value)) if float(value) != int(value) else str(int(value))


def _error_body(response: httpx.Response) -> tuple[str, str] | None:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(body, dict) and body.get("status") == "error":
        return str(body.get("errorType", "")), str(body.get("error", ""))
    return None


def _http_failure(response: httpx.Response, url: str, expr: str) -> PrometheusError:
    err = _error_body(response)
    if err is not None:
        return PrometheusQueryError(
            f"Prometheus query failed with HTTP {response.status_code}: {err[0]}: {err[1]}",
            url=url,
            query=expr,
            error_type=err[0],
            error=err[1],
        )
    snippet = response.text[:200].replace("\n", " ")
    return PrometheusHTTPError(
        f"Prometheus answered HTTP {response.status_code}: {snippet!r}",
        url=url,
        query=expr,
        status_code=response.status_code,
    )


def _parse(response: httpx.Response, url: str, expr: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise _http_failure(response, url, expr)
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise PrometheusMalformedResponse(
            f"Prometheus answer is not JSON ({exc}): {response.text[:200]!r}", url=url, query=expr
        ) from None
    if not isinstance(body, dict) or "status" not in body:
        raise PrometheusMalformedResponse(
            f"Prometheus answer has no 'status': {str(body)[:200]!r}", url=url, query=expr
        )
    if body["status"] != "success":
        error_type = str(body.get("errorType", ""))
        error = str(body.get("error", ""))
        raise PrometheusQueryError(
            f"Prometheus query error: {error_type}: {error}",
            url=url,
            query=expr,
            error_type=error_type,
            error=error,
        )
    data = body.get("data")
    if (
        not isinstance(data, dict)
        or data.get("resultType") not in _RESULT_TYPES
        or not isinstance(data.get("result"), list | str | int | float)
    ):
        raise PrometheusMalformedResponse(
            f"Prometheus answer has no valid 'data' (resultType/result): {str(data)[:200]!r}",
            url=url,
            query=expr,
        )
    return data
