"""Pure ASGI capture middleware: times every HTTP request and WebSocket session into a Recorder.

Stateless: everything about one request lives in locals of ``__call__`` and its per-request
``_HttpCall``; the only shared object is the Recorder, whose ``record_raw`` only appends and never
awaits (``capture_build`` turns what it queued into a record later). Lifespan and other scope
types pass straight through.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .capture_build import MAX_ERROR_MESSAGE_CHARS, RequestBuilder, parse_traceparent
from .config import AnalyticsConfig
from .recorder import Recorder

__all__ = ["CaptureMiddleware", "parse_traceparent"]  # parse_traceparent: see capture_build

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

_EXCLUDED_CACHE_SIZE = 4096
_WS_CLIENT_CLOSED = ("WebSocketDisconnect", "ClientDisconnected")
_CLIENT_GONE = ("ClientDisconnected", "ClientDisconnect")  # uvicorn's (an OSError) and starlette's


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _HttpCall:
    """What one HTTP request's wrapped receive and send observe (one object per request: cheaper
    than two closures over eight cells)."""

    __slots__ = ("_perf", "_receive", "_send", "disconnected", "end", "finished", "first_byte",
                 "read_any", "received", "sent", "status")  # fmt: skip

    def __init__(self, receive: Receive, send: Send, perf: Callable[[], float]) -> None:
        self._receive = receive
        self._send = send
        self._perf = perf
        self.status = 0
        self.first_byte = 0.0
        self.end = 0.0
        self.sent = 0
        self.received = 0
        self.read_any = False
        self.finished = False
        self.disconnected = False

    async def receive(self) -> Message:
        """The app's receive: count request bytes, note a disconnect before the response ended."""
        message = await self._receive()
        kind = message["type"]
        if kind == "http.request":
            self.read_any = True
            self.received += len(message.get("body", b""))
        elif kind == "http.disconnect" and not self.finished:
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        """The app's send: status, first and last byte times, response bytes."""
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.first_byte = self._perf()
        elif kind == "http.response.body":
            self.sent += len(message.get("body", b""))
        try:
            await self._send(message)
        except Exception as exc:
            if isinstance(exc, OSError) or type(exc).__name__ in _CLIENT_GONE:
                self.disconnected = True
            raise
        if kind == "http.response.body" and not message.get("more_body", False):
            self.end = self._perf()
            self.finished = True


class CaptureMiddleware:
    """Record every HTTP request and WebSocket session (except the mount and excluded paths)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        recorder: Recorder,
        config: AnalyticsConfig,
        mount_path: str,
        clock: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.recorder = recorder
        self.config = config
        self.clock = clock
        self.perf = perf
        mount = "/" + mount_path.strip("/")
        self._mount = mount
        self._mount_prefix = mount.rstrip("/") + "/"
        patterns = [fnmatch.translate(p) for p in config.exclude_paths]
        self._exclude = re.compile("|".join(patterns)) if patterns else None
        self._graphql = frozenset(config.graphql_paths)
        # Paths repeat: remember the exclusion verdict (bounded; cleared when full).
        self._excluded_cache: dict[str, bool] = {}
        self._logged_failure = False
        # One bound method for every request (the recorder calls raw[0](raw) when it folds):
        # calling a bound method is cheaper than calling an instance.
        self._build = RequestBuilder(config).build
        # The in-flight gauge is updated here in place (two method calls less per request); a
        # recorder stand-in without one gets a private gauge.
        gauge = getattr(recorder, "in_flight_gauge", None)
        self._gauge: dict[str, int] = gauge if gauge is not None else {}

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: HTTP is handled inline (one coroutine less per request)."""
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        outer_root = scope.get("root_path", "")
        path = self._route_path(scope)[0] if outer_root else scope["path"]
        excluded = self._excluded_cache.get(path)
        if excluded is None:
            excluded = self._excluded(path)
        if excluded:
            await self.app(scope, receive, send)
            return
        perf = self.perf
        call = _HttpCall(receive, send, perf)
        start = perf()
        ts = self.clock()
        protocol = "graphql" if path in self._graphql else "http"
        gauge = self._gauge
        in_flight = gauge.get(protocol, 0) + 1
        gauge[protocol] = in_flight
        error_type = ""
        error_message = ""
        try:
            await self.app(scope, call.receive, call.send)
        except Exception as exc:
            if not call.disconnected:
                error_type = type(exc).__name__
                error_message = str(exc)[:MAX_ERROR_MESSAGE_CHARS]
            raise
        except BaseException:  # cancelled: the server gave up on this request (client gone, shutdown)
            if not call.finished:
                call.disconnected = True
            raise
        finally:
            n = gauge[protocol] - 1
            gauge[protocol] = n if n > 0 else 0
            status = call.status
            if error_type:
                status = 500
            elif call.disconnected and not call.finished:
                status = 499
                error_type = "client_disconnected"
            elif status == 0:
                status = 500
                error_type = "no_response"
            end = call.end or perf()
            first_byte = call.first_byte
            try:
                # Only references and numbers here; parsing happens when the recorder folds its
                # batch (cache-warm, off this request's path). The scope itself is not kept: its
                # dicts would outlive the request and cost the garbage collector more.
                self.recorder.record_raw((
                    self._build, ts, protocol, path, outer_root, status,
                    (end - start) * 1000.0, (first_byte - start) * 1000.0 if first_byte else 0.0,
                    call.sent, call.received, call.read_any, error_type, error_message, in_flight,
                    scope.get("headers"), scope.get("client"), scope.get("mockforge"),
                    scope.get("route"), scope.get("root_path", ""), scope.get("method", "GET"),
                ))  # fmt: skip
            except Exception:  # a capture bug must never break the request it measured
                self._log_failure()

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
        in_flight = gauge.get("websocket", 0) + 1
        gauge["websocket"] = in_flight
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
            n = gauge["websocket"] - 1
            gauge["websocket"] = n if n > 0 else 0
            if error_type:
                status = 500
            elif accepted_at:
                status = 101
            else:
                status = denial_status or 403
            try:
                recorder.record_raw((
                    self._build, ts, "websocket", path, outer_root, status, (perf() - start) * 1000.0,
                    (accepted_at - start) * 1000.0 if accepted_at else 0.0, sent, received, True,
                    error_type, error_message, in_flight,
                    scope.get("headers"), scope.get("client"), scope.get("mockforge"),
                    scope.get("route"), scope.get("root_path", ""), "WS",
                ))  # fmt: skip
            except Exception:
                self._log_failure()

    def _log_failure(self) -> None:
        if not self._logged_failure:
            self._logged_failure = True
            log.exception("analytics capture failed; the request was served but not recorded")
