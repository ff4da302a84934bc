"""The Recorder's fold core: pending requests into per-minute cells, cells into series and clients.

A cell holds the counters of the requests of one minute that share every key dimension (the
series' and the client's), so folding a request is one dict lookup and a few additions. The
per-minute caps are applied when a cell is created: a request that finds its cell has values
already admitted this minute. Series and client deltas (and the client's endpoint counts) are
sums over cells, made when the buffers are read (:meth:`CellFolding._materialize`): per cell,
not per request.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any

from .capture_build import Fields, RawRequest
from .capture_types import OTHER, CapturedRequest, error_category
from .config import AnalyticsConfig
from .histogram import _INV_LOG_GAMMA, _MAX_INDEX
from .recorder_merge import MAX_CLIENT_ENDPOINTS, client_index_key, series_index_key
from .snapshot import ClientDelta, ClientKey, DropCounters, ErrorEvent, SeriesDelta, SeriesKey

__all__ = ["Cell", "CellFolding"]

log = logging.getLogger("mockforge_analytics_plugin.recorder")

_CAP_MINUTES_KEPT = 5  # late requests (long ones) still find their minute's cap sets
TRIM_LOW_WATER = 0.9  # trim to 90% of a bound, so a store that stays down does not trim every call
_INF = float("inf")
# Cell keys: (minute, protocol, method, endpoint, status, workspace, environment, test_run,
# client_id, user_agent); the first eight are the series' lookup key (series_index_key).
# The minute is the int boxed once per minute (Any: compiled, it is not boxed again for every
# request's key, and keys of one minute hash and compare it by identity).
CellKey = tuple[Any, str, str, str, int, str, str, str, str, str]
_SERIES_DIMS = 8


class _MinuteCaps:
    """Distinct values admitted in one minute, per capped dimension."""

    __slots__ = ("clients", "endpoints", "errors", "test_runs")

    def __init__(self) -> None:
        self.endpoints: set[str] = set()
        self.clients: set[tuple[str, str]] = set()
        self.test_runs: set[str] = set()
        self.errors = 0  # error events kept this minute


def _admit(seen: set[Any], value: Any, cap: int) -> bool:
    """Whether a value is within its minute's cap (admitting it when there is room)."""
    if value in seen:
        return True
    if len(seen) < cap:
        seen.add(value)
        return True
    return False


class Cell:
    """Counters of one minute's requests that share every key dimension."""

    __slots__ = ("active", "bytes_received", "bytes_sent", "duration_max", "duration_min", "duration_sum",
                 "faults", "histogram", "injected_sum", "requests", "ttfb_sum")  # fmt: skip

    def __init__(self) -> None:
        self.requests = 0
        self.duration_sum = 0.0  # latency, or session duration for WebSocket cells
        self.duration_min = _INF
        self.duration_max = -_INF
        self.ttfb_sum = 0.0
        self.histogram: dict[int, int] = {}
        self.bytes_sent = 0
        self.bytes_received = 0
        self.injected_sum = 0.0
        self.faults = 0
        self.active = 0  # highest in-flight gauge seen


def _fields_of(r: CapturedRequest) -> Fields:
    return (
        r.timestamp, r.protocol, r.method, r.endpoint, r.path, r.status_code, r.duration_ms,
        r.ttfb_ms, r.bytes_sent, r.bytes_received, r.client_id, r.user_agent, r.workspace_id,
        r.environment, r.test_run, r.mock_route_id, r.injected_latency_ms, r.fault_injected,
        r.trace_id, r.span_id, r.error_type, r.error_message, r.request_id, r.in_flight,
    )  # fmt: skip


class CellFolding:
    """The fold half of the Recorder (it inherits this): pending requests, cells, caps, the ring,
    error events, and the series and client deltas the cells are summed into."""

    def _init_folding(self, config: AnalyticsConfig, instance: str, source: str) -> None:
        self.instance = instance
        self.source = source
        self._drops = DropCounters()
        self._pending: list[Any] = []  # RawRequest or CapturedRequest (see Recorder.record_raw)
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
        self._cells: dict[CellKey, Cell] = {}
        self._minute = -1  # the newest minute seen, and its window as floats (ts is a float)
        self._minute_key: Any = -1  # the same minute, boxed once for the cell keys
        self._minute_start = -_INF
        self._minute_end = -_INF
        # Series are looked up by a plain tuple (hashing a frozen dataclass is slower); the
        # SeriesKey is built once per new series, so swap() hands out the dict as it is.
        self._series: dict[SeriesKey, SeriesDelta] = {}
        self._series_index: dict[tuple[Any, ...], SeriesDelta] = {}
        self._clients: dict[ClientKey, ClientDelta] = {}
        self._client_index: dict[tuple[Any, ...], ClientDelta] = {}
        self._errors: list[ErrorEvent] = []
        self._buffered = 0  # requests in the cells and series
        self._caps_minute = -1
        self._caps = _MinuteCaps()
        self._caps_by_minute: dict[int, _MinuteCaps] = {}
        # The ring keeps a request the middleware queued as itself (RawRequest.keep) and one
        # given as a CapturedRequest as its fields tuple (CapturedRequest order); recent() maps
        # both to RecentRequest.
        self._ring: deque[RawRequest | Fields] = deque(maxlen=max(1, config.recent_requests))
        self._total_requests = 0
        self._total_errors = 0
        self._total_sessions = 0

    def _fold(self) -> None:
        """Fold every pending request into the cells (a few dict operations per request)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        cells = self._cells
        ring_append = self._ring.append
        minute, start, end = self._minute, self._minute_start, self._minute_end
        minute_key: Any = self._minute_key
        m: Any
        failures = self.build_failures
        sessions = 0
        fields: Fields
        for item in pending:
            try:  # compiled, a field of the wrong type raises here: it loses one request, never the batch
                fields = item.builder.build(item) if isinstance(item, RawRequest) else _fields_of(item)
            except Exception:
                self._build_failed()
                continue
            (
                ts, protocol, method, endpoint, _path, status, duration, ttfb, sent, received,
                client_id, user_agent, workspace, environment, test_run, _route_id, injected, fault,
                _trace_id, _span_id, _error_type, _error_message, _request_id, in_flight,
            ) = fields  # fmt: skip
            if start <= ts < end:
                m = minute_key
            else:
                mi = int(ts // 60) * 60
                m = mi
                if mi > minute:
                    minute, start, end = mi, float(mi), float(mi + 60)
                    minute_key = m
            key = (m, protocol, method, endpoint, status, workspace, environment, test_run, client_id,
                   user_agent)  # fmt: skip
            c = cells.get(key)
            if c is None:
                c, key, fields = self._admit(key, fields)
            c.requests += 1
            if protocol != "websocket":
                c.duration_sum += duration
                if duration < c.duration_min:
                    c.duration_min = duration
                if duration > c.duration_max:
                    c.duration_max = duration
                c.ttfb_sum += ttfb
                hist = c.histogram
                us = duration * 1000.0  # histogram.bucket_index, inlined (one call less per request)
                if us <= 1.0:
                    b = 0
                else:
                    # math.log/ceil spelled out: compiled, they are C calls (no Python call)
                    b = math.ceil(math.log(us) * _INV_LOG_GAMMA)
                    if b > _MAX_INDEX:
                        b = _MAX_INDEX
                hist[b] = hist.get(b, 0) + 1
            else:  # a session's duration is not a request latency: no histogram, no min/max
                c.duration_sum += duration
                sessions += 1
            c.bytes_sent += sent
            c.bytes_received += received
            if injected:
                c.injected_sum += injected
            if fault:
                c.faults += 1
            if in_flight > c.active:
                c.active = in_flight
            if isinstance(item, RawRequest):  # narrowed: a native call, the fields stay unboxed
                item.keep(fields)
                ring_append(item)
            else:
                ring_append(fields)
            if status >= 400:
                self._error(fields, key)
        self._minute, self._minute_start, self._minute_end = minute, start, end
        self._minute_key = minute_key
        added = len(pending) - (self.build_failures - failures)
        self._total_requests += added
        self._total_sessions += sessions
        self._buffered += added
        if self._buffered > self._max_buffered:
            # Trim below the bound, so a store that stays down does not trim every batch.
            self._trim(int(self._max_buffered * TRIM_LOW_WATER))

    def _build_failed(self) -> None:
        self.build_failures += 1
        if self.build_failures == 1:
            log.exception("analytics: a captured request could not be built")

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

    def _admit(self, key: CellKey, fields: Fields) -> tuple[Cell, CellKey, Fields]:
        """A request with no cell yet: apply its minute's caps (a value past a cap becomes
        __other__ and the request counts as overflow), then find or make the cell of the capped
        key. Returns (cell, capped key, ring fields). Keys with an __other__ value are not
        remembered as they came, so every overflowing request passes here and is counted."""
        minute, protocol, method, endpoint, status, workspace, environment, test_run, client_id, agent = key
        caps = self._caps if minute == self._caps_minute else self._caps_for(minute)
        capped = False
        if not _admit(caps.endpoints, endpoint, self._max_endpoints):
            endpoint = OTHER
            capped = True
            self._drops.endpoint_overflow += 1
        if test_run and not _admit(caps.test_runs, test_run, self._max_test_runs):
            test_run = OTHER
            capped = True
            self._drops.test_run_overflow += 1
        if not _admit(caps.clients, (client_id, agent), self._max_clients):
            client_id = agent = OTHER
            capped = True
            self._drops.client_overflow += 1
            fields = (*fields[:10], OTHER, OTHER, *fields[12:])  # the ring shows the overflow
        if capped:
            key = (minute, protocol, method, endpoint, status, workspace, environment, test_run, client_id,
                   agent)  # fmt: skip
        cell = self._cells.get(key)
        if cell is None:
            cell = Cell()
            self._cells[key] = cell
        return cell, key, fields

    def _error(self, fields: Fields, key: CellKey) -> None:
        """Count an error (status >= 400) and keep its event unless this minute's sample is full."""
        self._total_errors += 1
        minute = key[0]
        caps = self._caps if minute == self._caps_minute else self._caps_for(minute)
        if caps.errors >= self._max_errors_per_minute:
            self._drops.error_events_sampled_out += 1
            return
        caps.errors += 1
        (
            ts, protocol, method, _endpoint, path, status, _duration, _ttfb, _sent, _received,
            _client_id, _agent, workspace, environment, _test_run, _route_id, _injected, fault,
            trace_id, span_id, error_type, error_message, request_id, _in_flight,
        ) = fields  # fmt: skip
        endpoint, test_run, client_id, agent = key[3], key[7], key[8], key[9]  # as capped
        if not error_type:
            error_type = f"HTTP {status}"
        self._errors.append(ErrorEvent(
            ts, self.instance, protocol, method, endpoint, path, status, error_type,
            error_category(status, error_type), error_message, request_id, trace_id, span_id,
            client_id, agent, workspace, environment, test_run, fault,
        ))  # fmt: skip
        if len(self._errors) > self._max_buffered_errors:
            self._trim_errors(int(self._max_buffered_errors * TRIM_LOW_WATER))

    def _trim_errors(self, target: int) -> None:
        excess = len(self._errors) - target
        if excess > 0:
            del self._errors[:excess]
            self._drops.buffer_dropped_error_events += excess

    def _trim(self, target: int) -> None:
        """Drop the oldest minutes' series until at most ``target`` requests wait; count them."""
        self._materialize()
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

    def _materialize(self) -> None:
        """Add every cell into its series and client deltas, then start with no cells."""
        cells = self._cells
        if not cells:
            return
        self._cells = {}
        series, series_index = self._series, self._series_index
        clients, client_index = self._clients, self._client_index
        source, instance = self.source, self.instance
        for key, c in cells.items():
            minute, protocol, method, endpoint, status, workspace, environment, test_run, client, agent = key
            n = c.requests
            skey = key[:_SERIES_DIMS]
            d = series_index.get(skey)
            if d is None:
                d = SeriesDelta()
                series_index[skey] = d
                series[SeriesKey(minute, source, instance, protocol, method, endpoint, status, workspace,
                                 environment, test_run)] = d  # fmt: skip
            d.request_count += n
            is_error = status >= 400
            if is_error:
                d.error_count += n
            is_ws = protocol == "websocket"
            if is_ws:
                d.session_count += n
                d.session_duration_sum += c.duration_sum
            else:
                d.latency_count += n
                d.latency_sum += c.duration_sum
                if d.latency_min is None or c.duration_min < d.latency_min:
                    d.latency_min = c.duration_min
                if d.latency_max is None or c.duration_max > d.latency_max:
                    d.latency_max = c.duration_max
                d.ttfb_sum += c.ttfb_sum
                if d.histogram:
                    hist = d.histogram
                    for b, count in c.histogram.items():
                        hist[b] = hist.get(b, 0) + count
                else:
                    d.histogram = c.histogram  # the cell is dropped: no copy needed
            d.bytes_sent += c.bytes_sent
            d.bytes_received += c.bytes_received
            d.injected_latency_sum += c.injected_sum
            d.fault_count += c.faults
            if c.active > d.active_connections:
                d.active_connections = c.active

            ckey = (minute // 3600 * 3600, client, agent, protocol, workspace, environment, test_run)
            cd = client_index.get(ckey)
            if cd is None:
                cd = ClientDelta()
                client_index[ckey] = cd
                clients[ClientKey(ckey[0], instance, client, agent, protocol, workspace, environment,
                                  test_run)] = cd  # fmt: skip
            cd.request_count += n
            if is_error:
                cd.error_count += n
            if not is_ws:
                cd.latency_count += n
                cd.latency_sum += c.duration_sum
            cd.bytes_sent += c.bytes_sent
            cd.bytes_received += c.bytes_received
            # Cells are in the order of their first request, so the endpoints that keep their
            # name are the first MAX_CLIENT_ENDPOINTS the client called, as per request.
            eps = cd.endpoints
            ep = method + " " + endpoint
            if ep not in eps and len(eps) >= MAX_CLIENT_ENDPOINTS:
                ep = OTHER
            eps[ep] = eps.get(ep, 0) + n
