"""In-memory capture buffers: per-minute series, hourly clients, sampled errors, a recent ring.

Everything runs on the event loop thread and nothing here awaits, so no locks are needed. The
flush task takes the buffers with :meth:`Recorder.swap` and, when a write fails, gives them back
with :meth:`Recorder.restore`. Memory is bounded whatever the traffic: per-minute caps on distinct
endpoints, clients and test runs (beyond them a value becomes ``__other__`` and the request is
counted as overflow), a per-minute cap on error events, a fixed ring, and a bound on how many
requests may wait for the store (past it the oldest minutes are dropped and counted exactly).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from .capture_types import OTHER, CapturedRequest, error_category
from .config import AnalyticsConfig
from .histogram import _INV_LOG_GAMMA, _MAX_INDEX, _ceil, _log
from .recorder_merge import (
    MAX_CLIENT_ENDPOINTS,
    client_index_key,
    merge_client_delta,
    merge_series_delta,
    merged,
    series_index_key,
)
from .snapshot import (
    ClientDelta,
    ClientKey,
    DropCounters,
    ErrorEvent,
    RecentRequest,
    RecorderSnapshot,
    SeriesDelta,
    SeriesKey,
)

__all__ = ["MAX_CLIENT_ENDPOINTS", "CapturedRequest", "Recorder", "error_category", "merge_series_delta"]

log = logging.getLogger(__name__)

_CAP_MINUTES_KEPT = 5  # late requests (long ones) still find their minute's cap sets
_TRIM_LOW_WATER = 0.9  # the request path trims to 90% of the bound so it does not trim every call
# record() only appends; requests are folded into the buffers in batches: folding in a tight
# loop keeps the buffers in the CPU cache. Measured inside the example host (CPU µs per request
# above a no-op layer): folding one at a time +8.1, batches of 8 +8.2, 32 +6.2, 128 +5.1,
# 512 +5.4. Every read folds first, so nothing is stale.
_BATCH = 128


class _MinuteCaps:
    """Distinct values admitted in one minute, per capped dimension."""

    __slots__ = ("clients", "endpoints", "errors", "test_runs")

    def __init__(self) -> None:
        self.endpoints: set[str] = set()
        self.clients: set[tuple[str, str]] = set()
        self.test_runs: set[str] = set()
        self.errors = 0  # error events kept this minute


class Recorder:
    """Per-minute series, hourly clients, sampled error events, recent ring and in-flight gauge."""

    def __init__(self, config: AnalyticsConfig, instance: str, source: str = "middleware") -> None:
        self.config = config
        self.instance = instance
        self.source = source
        self._drops = DropCounters()
        self._pending: list[Any] = []  # CapturedRequest or a raw tuple (see record_raw)
        self.build_failures = 0
        self._max_endpoints = config.max_endpoints
        self._max_clients = config.max_clients
        self._max_test_runs = config.max_test_runs
        self._max_errors_per_minute = config.max_error_events_per_minute
        self._max_buffered = max(1, config.max_buffered_events)
        # Error events waiting for the store: an hour of errors at the per-minute rate, at most
        # max_buffered_events (each event is also a request).
        self._max_buffered_errors = max(
            1, min(config.max_buffered_events, config.max_error_events_per_minute * 60)
        )
        # Series are looked up by a plain tuple (hashing a frozen dataclass is slower); the
        # SeriesKey is built once per new series, so swap() hands out the dict as it is.
        self._series: dict[SeriesKey, SeriesDelta] = {}
        self._series_index: dict[tuple[Any, ...], SeriesDelta] = {}
        self._clients: dict[ClientKey, ClientDelta] = {}
        self._client_index: dict[tuple[Any, ...], ClientDelta] = {}
        self._errors: list[ErrorEvent] = []
        self._buffered = 0  # sum of request_count over self._series
        self._caps_minute = -1
        self._caps = _MinuteCaps()
        self._caps_by_minute: dict[int, _MinuteCaps] = {}
        # The ring keeps the plain tuples of str/number fields that _add gets (CapturedRequest
        # order; recent() maps them to RecentRequest): the GC stops tracking such tuples, so a
        # full ring adds nothing to every full collection.
        self._ring: deque[tuple[Any, ...]] = deque(maxlen=max(1, config.recent_requests))
        self._in_flight: dict[str, int] = {}
        self._total_requests = 0
        self._total_errors = 0
        self._total_sessions = 0

    # -- the request path -------------------------------------------------------------------

    def request_started(self, protocol: str) -> int:
        """Count a request of ``protocol`` as in flight; return the gauge including it."""
        n = self._in_flight.get(protocol, 0) + 1
        self._in_flight[protocol] = n
        return n

    def request_finished(self, protocol: str) -> None:
        """Count a request of ``protocol`` as no longer in flight."""
        n = self._in_flight.get(protocol, 0) - 1
        self._in_flight[protocol] = n if n > 0 else 0

    def _caps_for(self, minute: int) -> _MinuteCaps:
        caps = self._caps_by_minute.get(minute)
        if caps is None:
            caps = _MinuteCaps()
            self._caps_by_minute[minute] = caps
            if len(self._caps_by_minute) > _CAP_MINUTES_KEPT:
                # Keep the newest few minutes: a late request may still belong to one of them.
                for old in sorted(self._caps_by_minute)[:-_CAP_MINUTES_KEPT]:
                    del self._caps_by_minute[old]
        if minute >= self._caps_minute:
            self._caps_minute = minute
            self._caps = caps
        return caps

    def record(self, rec: CapturedRequest) -> None:
        """Add one finished request (appended now, folded into the buffers in small batches)."""
        pending = self._pending
        pending.append(rec)
        if len(pending) >= _BATCH:
            self._fold()

    def record_raw(self, raw: tuple[Any, ...]) -> None:
        """Queue a request as ``raw``, a tuple whose first item turns it into the CapturedRequest
        fields, in order, as a tuple.

        The middleware uses this to move parsing (headers, client id, endpoint) into the batch.
        """
        pending = self._pending
        pending.append(raw)
        if len(pending) >= _BATCH:
            self._fold()

    def _fold(self) -> None:
        """Fold every pending request into the buffers."""
        pending = self._pending
        if pending:
            self._pending = []
            added = len(pending)
            add = self._add
            for item in pending:
                if type(item) is tuple:
                    try:
                        fields = item[0](item)
                    except Exception:  # a capture bug loses one request, never the batch
                        added -= 1
                        self.build_failures += 1
                        if self.build_failures == 1:
                            log.exception("analytics: a captured request could not be built")
                        continue
                    add(fields)
                else:
                    r: CapturedRequest = item
                    add((
                        r.timestamp, r.protocol, r.method, r.endpoint, r.path, r.status_code,
                        r.duration_ms, r.ttfb_ms, r.bytes_sent, r.bytes_received, r.client_id,
                        r.user_agent, r.workspace_id, r.environment, r.test_run, r.mock_route_id,
                        r.injected_latency_ms, r.fault_injected, r.trace_id, r.span_id, r.error_type,
                        r.error_message, r.request_id, r.in_flight,
                    ))  # fmt: skip
            self._total_requests += added
            self._buffered += added
            if self._buffered > self._max_buffered:
                # Trim below the bound, so a store that stays down does not trim every batch.
                self._trim(int(self._max_buffered * _TRIM_LOW_WATER))

    @property
    def drops(self) -> DropCounters:
        """What was not kept, by reason (pending requests folded first)."""
        self._fold()
        return self._drops

    def _add(self, fields: tuple[Any, ...]) -> None:
        """Add one request (CapturedRequest fields, in order, as a tuple) to every buffer: a few
        dict operations. The tuple itself becomes the recent ring's entry (no copy)."""
        (
            ts, protocol, method, raw_endpoint, path, status, duration, ttfb, sent, received,
            client_id, user_agent, workspace, environment, raw_test_run, _route_id, injected, fault,
            trace_id, span_id, error_type, error_message, request_id, in_flight,
        ) = fields  # fmt: skip
        minute = int(ts // 60) * 60
        caps = self._caps if minute == self._caps_minute else self._caps_for(minute)
        endpoint = raw_endpoint
        seen = caps.endpoints
        if endpoint not in seen:
            if len(seen) < self._max_endpoints:
                seen.add(endpoint)
            else:
                endpoint = OTHER
                self._drops.endpoint_overflow += 1
        test_run = raw_test_run
        if test_run:
            seen = caps.test_runs
            if test_run not in seen:
                if len(seen) < self._max_test_runs:
                    seen.add(test_run)
                else:
                    test_run = OTHER
                    self._drops.test_run_overflow += 1

        # source and instance are the same for every request: not part of the lookup key.
        key = (minute, protocol, method, endpoint, status, workspace, environment, test_run)
        d = self._series_index.get(key)
        if d is None:
            d = SeriesDelta()
            self._series_index[key] = d
            self._series[SeriesKey(minute, self.source, self.instance, protocol, method, endpoint, status,
                                   workspace, environment, test_run)] = d  # fmt: skip
        d.request_count += 1
        is_error = status >= 400
        if is_error:
            d.error_count += 1
            self._total_errors += 1
        is_ws = protocol == "websocket"
        if is_ws:
            # A session's duration is not a request latency: keep it out of the histogram.
            d.session_count += 1
            d.session_duration_sum += duration
            self._total_sessions += 1
        else:
            d.latency_count += 1
            d.latency_sum += duration
            lo = d.latency_min
            if lo is None or duration < lo:
                d.latency_min = duration
            hi = d.latency_max
            if hi is None or duration > hi:
                d.latency_max = duration
            d.ttfb_sum += ttfb
            hist = d.histogram
            us = duration * 1000.0  # histogram.bucket_index, inlined (one call less per request)
            if us <= 1.0:
                b = 0
            else:
                b = _ceil(_log(us) * _INV_LOG_GAMMA)
                if b > _MAX_INDEX:
                    b = _MAX_INDEX
            hist[b] = hist.get(b, 0) + 1
        d.bytes_sent += sent
        d.bytes_received += received
        if injected:
            d.injected_latency_sum += injected
        if fault:
            d.fault_count += 1
        if in_flight > d.active_connections:
            d.active_connections = in_flight

        # Hourly per-client counters.
        pair = (client_id, user_agent)
        seen_clients = caps.clients
        if pair not in seen_clients:
            if len(seen_clients) < self._max_clients:
                seen_clients.add(pair)
            else:
                client_id = user_agent = OTHER
                self._drops.client_overflow += 1
                fields = (*fields[:10], OTHER, OTHER, *fields[12:])  # the ring shows the overflow
        ckey = (minute // 3600 * 3600, client_id, user_agent, protocol, workspace, environment, test_run)
        c = self._client_index.get(ckey)
        if c is None:
            c = ClientDelta()
            self._client_index[ckey] = c
            self._clients[ClientKey(ckey[0], self.instance, client_id, user_agent, protocol, workspace,
                                    environment, test_run)] = c  # fmt: skip
        c.request_count += 1
        if is_error:
            c.error_count += 1
        if not is_ws:
            c.latency_count += 1
            c.latency_sum += duration
        c.bytes_sent += sent
        c.bytes_received += received
        eps = c.endpoints
        ep = method + " " + endpoint
        if ep not in eps and len(eps) >= MAX_CLIENT_ENDPOINTS:
            ep = OTHER
        eps[ep] = eps.get(ep, 0) + 1

        self._ring.append(fields)
        if is_error:
            if caps.errors < self._max_errors_per_minute:
                caps.errors += 1
                if not error_type:
                    error_type = f"HTTP {status}"
                event = ErrorEvent(
                    ts, self.instance, protocol, method, endpoint, path, status, error_type,
                    error_category(status, error_type), error_message, request_id, trace_id,
                    span_id, client_id, user_agent, workspace, environment, test_run, fault,
                )  # fmt: skip
                self._errors.append(event)
                if len(self._errors) > self._max_buffered_errors:
                    self._trim_errors(int(self._max_buffered_errors * _TRIM_LOW_WATER))
            else:
                self._drops.error_events_sampled_out += 1

    # -- the flush side ---------------------------------------------------------------------

    def swap(self) -> RecorderSnapshot:
        """Take everything buffered so far and start fresh buffers (O(1): no copying)."""
        self._fold()
        snap = RecorderSnapshot(series=self._series, clients=self._clients, errors=self._errors)
        self._series = {}
        self._series_index = {}
        self._clients = {}
        self._client_index = {}
        self._errors = []
        self._buffered = 0
        return snap

    def restore(self, snapshot: RecorderSnapshot) -> None:
        """Put back a snapshot whose write failed, merged with what arrived since; then bound it."""
        self._fold()
        series = merged(snapshot.series, self._series, merge_series_delta)  # older first
        self._series = series
        self._series_index = {
            series_index_key(k): d
            for k, d in series.items()
            if k.source == self.source and k.instance == self.instance
        }
        self._buffered = sum(d.request_count for d in series.values())

        clients = merged(snapshot.clients, self._clients, merge_client_delta)
        self._clients = clients
        self._client_index = {
            client_index_key(k): d for k, d in clients.items() if k.instance == self.instance
        }

        self._errors = list(snapshot.errors) + self._errors
        if len(self._errors) > self._max_buffered_errors:
            self._trim_errors(self._max_buffered_errors)
        if self._buffered > self._max_buffered:
            self._trim(self._max_buffered)

    def _trim(self, target: int) -> None:
        """Drop the oldest minutes' series until at most ``target`` requests wait; count them."""
        dropped = 0
        for k in sorted(self._series, key=lambda s: s.minute):
            if self._buffered - dropped <= target:
                break
            d = self._series.pop(k)
            self._series_index.pop(series_index_key(k), None)
            dropped += d.request_count
        self._buffered -= dropped
        self._drops.buffer_dropped_requests += dropped
        if self._series:
            # Client counters of hours before every kept minute are dropped with them (their
            # requests are already counted above); this keeps the client dict bounded too.
            oldest_hour = min(k.minute for k in self._series) // 3600 * 3600
            for ck in [ck for ck in self._clients if ck.hour < oldest_hour]:
                del self._clients[ck]
                self._client_index.pop(client_index_key(ck), None)

    def _trim_errors(self, target: int) -> None:
        excess = len(self._errors) - target
        if excess > 0:
            del self._errors[:excess]
            self._drops.buffer_dropped_error_events += excess

    # -- reads ------------------------------------------------------------------------------

    def buffered_requests(self) -> int:
        """Requests waiting in memory for the store (current plus restored)."""
        self._fold()
        return self._buffered

    def buffered_error_events(self) -> int:
        """Error events waiting in memory for the store."""
        self._fold()
        return len(self._errors)

    def in_flight(self) -> dict[str, int]:
        """The in-flight gauge per protocol."""
        return dict(self._in_flight)

    @property
    def totals(self) -> dict[str, int]:
        """Counts since start: requests, errors and WebSocket sessions recorded."""
        self._fold()
        return {
            "requests": self._total_requests,
            "errors": self._total_errors,
            "websocket_sessions": self._total_sessions,
        }

    def recent(self, limit: int | None = None) -> list[RecentRequest]:
        """The most recent requests, newest first (at most ``limit``)."""
        self._fold()
        n = len(self._ring) if limit is None else max(0, min(limit, len(self._ring)))
        out: list[RecentRequest] = []
        ring = self._ring
        for i in range(1, n + 1):
            f = ring[-i]  # CapturedRequest fields, in order (see _add)
            out.append(RecentRequest(f[0], f[1], f[2], f[4], f[3], f[5], f[6], f[7], f[8], f[9], f[10],
                                     f[11], f[14], f[12], f[13], f[15], f[16], f[17], f[18]))  # fmt: skip
        return out
