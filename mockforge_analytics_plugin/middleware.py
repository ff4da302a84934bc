"""Pure ASGI capture middleware: times every HTTP request and WebSocket session into a Recorder.

Stateless: everything about one request lives in its ``_HttpCall`` (which is also the RawRequest
it queues); the only shared object is the Recorder, whose ``record_raw`` only appends and never
awaits (``capture_build`` turns what it queued into a record later). ``__call__`` is not a
coroutine: lifespan and other scopes, the mount and excluded paths get the app's own awaitable.
Compiled with mypyc (setup.py): annotations here are checked at run time.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .capture_build import MAX_ERROR_MESSAGE_CHARS, InFlight, RawRequest, RequestBuilder, parse_traceparent
from .capture_types import RawRecorder
from .config import AnalyticsConfig
from .recorder import Recorder

__all__ = ["CaptureMiddleware", "PrefixMatcher", "parse_traceparent"]  # parse_traceparent: see capture_build

# ASGI scopes and messages are dicts (the spec says so); typed as such, the compiled module uses
# dict operations directly.
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

_EXCLUDED_CACHE_SIZE = 4096
_WS_CLIENT_CLOSED = ("WebSocketDisconnect", "ClientDisconnected")
_CLIENT_GONE = ("ClientDisconnected", "ClientDisconnect")  # uvicorn's (an OSError) and starlette's
_LOST = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _HttpCall(RawRequest):
    """One HTTP request: its wrapped receive and send, and then the RawRequest it is queued as
    (one object per request: no closures, no second object to queue).

    Everything the request path does besides awaiting the app lives in plain (non-generator)
    methods here: compiled, their locals are C locals, and the middleware's coroutine stays a
    few lines of code (the request path's cost is mostly its code footprint in the CPU's cache).
    """

    __slots__ = ("_perf", "_receive", "_send", "disconnected", "end", "finished", "first_byte", "start")

    def __init__(
        self, builder: RequestBuilder, receive: Receive, send: Send, perf: Callable[[], float]
    ) -> None:
        self.builder = builder
        self._receive: Receive | None = receive
        self._send: Send | None = send
        self._perf = perf
        self.status = 0
        self.first_byte = 0.0
        self.end = 0.0
        self.sent = 0
        self.received = 0
        self.read_any = False
        self.finished = False
        self.disconnected = False
        self.error_type = ""
        self.error_message = ""
        self.start = perf()

    async def receive(self) -> Message:
        """The app's receive: count request bytes, note a disconnect before the response ended."""
        message = await self._receive()  # type: ignore[misc]
        kind: str = message["type"]
        if kind == "http.request":
            self.read_any = True
            self.received += len(message.get("body", b""))
        elif kind == "http.disconnect" and not self.finished:
            self.disconnected = True
        return message

    def send(self, message: Message) -> Awaitable[None]:
        """The app's send: status, first and last byte times, response bytes.

        Only the last body message goes through a coroutine of ours (to time the end after the
        server took it); the others return the server's own awaitable: one coroutine less per
        request. A client gone while those are sent surfaces as the app's exception (see
        ``failed``).
        """
        kind: str = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.first_byte = self._perf()
        elif kind == "http.response.body":
            self.sent += len(message.get("body", b""))
            if not message.get("more_body", False):
                return self._send_last(message)
        return self._send(message)  # type: ignore[misc]

    async def _send_last(self, message: Message) -> None:
        try:
            await self._send(message)  # type: ignore[misc]
        except Exception as exc:
            if _client_gone(exc):
                self.disconnected = True
            raise
        self.end = self._perf()
        self.finished = True

    def failed(self, exc: BaseException) -> None:
        """The app raised: its own error (a 500 with the type), or the client went away."""
        if isinstance(exc, Exception):
            if not self.finished and _connection_lost(exc):
                self.disconnected = True  # the server's send raised (start or a middle chunk)
            if not self.disconnected:
                self.error_type = type(exc).__name__
                self.error_message = str(exc)[:MAX_ERROR_MESSAGE_CHARS]
        elif not self.finished:
            self.disconnected = True  # cancelled: the server gave up on it (client gone, shutdown)

    def settle(self, scope: Scope) -> None:
        """Fill in the outcome once the app is done (status, times, the scope's references)."""
        status = self.status
        if self.error_type:
            status = 500
        elif self.disconnected and not self.finished:
            status = 499
            self.error_type = "client_disconnected"
        elif status == 0:
            status = 500
            self.error_type = "no_response"
        start = self.start
        end = self.end or self._perf()
        first_byte = self.first_byte
        # Only references and numbers here; parsing happens when the recorder folds its batch
        # (cache-warm, off this request's path). The scope itself is not kept: its dicts would
        # outlive the request and cost the garbage collector more; nor are the server's receive
        # and send.
        self._receive = self._send = None
        self.status = status
        self.duration_ms = (end - start) * 1000.0
        self.ttfb_ms = (first_byte - start) * 1000.0 if first_byte else 0.0
        _take_scope(self, scope)
        self.method = scope.get("method", "GET")


def _literal_prefix(pattern: str) -> str:
    """What every path an fnmatch pattern matches starts with (up to its first wildcard)."""
    cuts = [i for i in (pattern.find("*"), pattern.find("?"), pattern.find("[")) if i >= 0]
    return pattern[: min(cuts)] if cuts else pattern


def _take_scope(raw: RawRequest, scope: Scope) -> None:
    """Keep what the builder reads from a finished request's scope (read at the end: mounts and
    the router update it in place)."""
    raw.headers = scope.get("headers")
    raw.client = scope.get("client")
    raw.mf = scope.get("mockforge")
    raw.route = scope.get("route")
    raw.root_path = scope.get("root_path", "")


def _client_gone(exc: BaseException) -> bool:
    """Whether an exception out of the server's send means the client went away."""
    return isinstance(exc, OSError) or type(exc).__name__ in _CLIENT_GONE


def _connection_lost(exc: BaseException) -> bool:
    """Whether an exception out of the app is a lost client connection (a server's send raising
    through the app), not the app's own error: narrower than ``_client_gone``, since an app's
    own OSError (a missing file, say) is a 500."""
    return isinstance(exc, _LOST) or type(exc).__name__ in _CLIENT_GONE


class CaptureMiddleware:
    """Record every HTTP request and WebSocket session (except the mount and excluded paths)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        recorder: RawRecorder,
        config: AnalyticsConfig,
        mount_path: str,
        clock: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.recorder = recorder
        # The real Recorder is called directly (compiled: a C call, not a method lookup); a test's
        # stand-in through its record_raw.
        self._native: Recorder | None = recorder if isinstance(recorder, Recorder) else None
        self.config = config
        self.clock = clock
        self.perf = perf
        mount = "/" + mount_path.strip("/")
        self._mount = mount
        self._mount_prefix = mount.rstrip("/") + "/"
        patterns = [fnmatch.translate(p) for p in config.exclude_paths]
        self._exclude = re.compile("|".join(patterns)) if patterns else None
        self._graphql = frozenset(config.graphql_paths)
        self._candidate_prefixes = (mount, *(_literal_prefix(p) for p in config.exclude_paths))
        # Paths repeat: remember the exclusion verdict (bounded; cleared when full).
        self._excluded_cache: dict[str, bool] = {}
        self._logged_failure = False
        self._builder = RequestBuilder(config)  # every queued request carries it to the fold
        # The in-flight gauge is updated here in place (two method calls less per request); a
        # recorder stand-in without one gets a private gauge.
        gauge = getattr(recorder, "in_flight_gauge", None)
        self._gauge: InFlight = gauge if isinstance(gauge, InFlight) else InFlight()

    def _excluded(self, path: str) -> bool:
        """Whether a path is the mount, under it, or matches exclude_paths (cached verdict)."""
        verdict = self._excluded_cache.get(path)
        if verdict is None:
            verdict = (
                path == self._mount
                or path.startswith(self._mount_prefix)
                or (self._exclude is not None and self._exclude.match(path) is not None)
            )
            cache = self._excluded_cache
            if len(cache) >= _EXCLUDED_CACHE_SIZE:
                cache.clear()
            cache[path] = verdict
        return verdict

    @staticmethod
    def _route_path(scope: Scope) -> tuple[str, str]:
        """(path relative to the server's root_path, that root_path), as Starlette routes see it."""
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
            path = path[len(root) :] or "/"
        return path, root

    def _begin(self, scope: Scope, receive: Receive, send: Send) -> _HttpCall | None:
        """A new request's _HttpCall, counted in flight; None for the mount and excluded paths."""
        outer_root = scope.get("root_path", "")
        path: str = self._route_path(scope)[0] if outer_root else scope["path"]
        # Only a path starting like the mount or a pattern can be excluded: one C call for most
        # requests instead of hashing a new path string for the verdict cache.
        if path.startswith(self._candidate_prefixes):
            excluded = self._excluded_cache.get(path)
            if excluded is None:
                excluded = self._excluded(path)
            if excluded:
                return None
        call = _HttpCall(self._builder, receive, send, self.perf)
        call.ts = self.clock()
        call.path = path
        call.outer_root = outer_root
        gauge = self._gauge
        if self._graphql and path in self._graphql:
            call.protocol = "graphql"
            call.in_flight = gauge.graphql = gauge.graphql + 1
        else:
            call.protocol = "http"
            call.in_flight = gauge.http = gauge.http + 1
        return call

    def _finish(self, call: _HttpCall, scope: Scope) -> None:
        """Out of flight, outcome settled, queued for the recorder (a capture bug is logged, never
        raised into the request it measured)."""
        gauge = self._gauge
        if call.protocol == "graphql":
            gauge.graphql = max(0, gauge.graphql - 1)
        else:
            gauge.http = max(0, gauge.http - 1)
        try:
            call.settle(scope)
            native = self._native
            if native is not None:
                native.record_raw(call)
            else:
                self.recorder.record_raw(call)
        except Exception:
            self._log_failure()

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """ASGI entry point. Not a coroutine itself: an HTTP request gets one (``_http``), other
        scopes and excluded paths get the app's own awaitable (no layer of ours around them)."""
        kind = scope["type"]
        if kind == "http":
            call = self._begin(scope, receive, send)
            if call is not None:
                return self._http(call, scope)
        elif kind == "websocket":
            return self._websocket(scope, receive, send)
        return self.app(scope, receive, send)

    async def _http(self, call: _HttpCall, scope: Scope) -> None:
        """One HTTP request: the app awaited, the outcome recorded. The work around the await is
        in plain methods (see _HttpCall), so this coroutine's compiled code stays small."""
        try:
            await self.app(scope, call.receive, call.send)
        except BaseException as exc:
            call.failed(exc)
            raise
        finally:
            self._finish(call, scope)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, outer_root = self._route_path(scope)
        if self._excluded(path):
            await self.app(scope, receive, send)
            return
        perf = self.perf
        start = perf()
        ts = self.clock()
        recorder = self.recorder
        gauge = self._gauge
        in_flight = gauge.websocket + 1
        gauge.websocket = in_flight
        accepted_at = 0.0
        denial_status = 0
        sent = 0
        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                if data is not None:
                    received += len(data)
                else:
                    received += _utf8_len(message.get("text") or "")
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal accepted_at, denial_status, sent
            kind = message["type"]
            if kind == "websocket.send":
                data = message.get("bytes")
                sent += len(data) if data is not None else _utf8_len(message.get("text") or "")
            elif kind == "websocket.accept":
                accepted_at = perf()
            elif kind == "websocket.http.response.start":
                denial_status = message["status"]
            elif kind == "websocket.http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "websocket.close" and not accepted_at and not denial_status:
                denial_status = 403  # closed before the handshake: the server answers 403
            await send(message)

        error_type = ""
        error_message = ""
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception as exc:
            # The client closing the socket is how a session ends, not an error of the app.
            if type(exc).__name__ not in _WS_CLIENT_CLOSED:
                error_type = type(exc).__name__
                error_message = str(exc)[:MAX_ERROR_MESSAGE_CHARS]
            raise
        finally:
            gauge.websocket = max(0, gauge.websocket - 1)
            if error_type:
                status = 500
            elif accepted_at:
                status = 101
            else:
                status = denial_status or 403
            try:
                raw = RawRequest(self._builder)
                raw.ts = ts
                raw.protocol = "websocket"
                raw.path = path
                raw.outer_root = outer_root
                raw.status = status
                raw.duration_ms = (perf() - start) * 1000.0
                raw.ttfb_ms = (accepted_at - start) * 1000.0 if accepted_at else 0.0
                raw.sent = sent
                raw.received = received
                raw.read_any = True
                raw.error_type = error_type
                raw.error_message = error_message
                raw.in_flight = in_flight
                _take_scope(raw, scope)
                raw.method = "WS"
                recorder.record_raw(raw)
            except Exception:
                self._log_failure()

    def _log_failure(self) -> None:
        if not self._logged_failure:
            self._logged_failure = True
            log.exception("analytics capture failed; the request was served but not recorded")


class PrefixMatcher:
    """A Mount's ``matches`` that turns away every path not containing ``needle`` before the
    Mount's own (regex) matching: the host tries plugin mounts before its mock routes, so every
    mock request passes here. Compiled with the rest of this module, it costs a C call."""

    def __init__(self, needle: str, matches: Callable[[Scope], Any], no_match: Any) -> None:
        self._needle = needle
        self._matches = matches
        self._no_match = no_match

    def __call__(self, scope: Scope) -> Any:
        """(Match, child scope) for the router."""
        if self._needle not in scope["path"]:
            return self._no_match
        return self._matches(scope)
