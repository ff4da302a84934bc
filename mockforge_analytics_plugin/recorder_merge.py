"""Merging recorder deltas (a failed flush's snapshot with what arrived since) and their index keys."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .capture_types import OTHER
from .snapshot import ClientDelta, ClientKey, SeriesDelta, SeriesKey

__all__ = [
    "MAX_CLIENT_ENDPOINTS",
    "client_index_key",
    "merge_client_delta",
    "merge_series_delta",
    "merged",
    "series_index_key",
]

K = TypeVar("K")
V = TypeVar("V")

MAX_CLIENT_ENDPOINTS = 100  # distinct "METHOD endpoint" keys per client delta; the rest -> __other__


def merge_series_delta(into: SeriesDelta, other: SeriesDelta) -> None:
    """Add ``other``'s counters into ``into`` (exact: sums, min/max, histogram counts)."""
    into.request_count += other.request_count
    into.error_count += other.error_count
    into.latency_count += other.latency_count
    into.latency_sum += other.latency_sum
    if other.latency_min is not None and (into.latency_min is None or other.latency_min < into.latency_min):
        into.latency_min = other.latency_min
    if other.latency_max is not None and (into.latency_max is None or other.latency_max > into.latency_max):
        into.latency_max = other.latency_max
    into.ttfb_sum += other.ttfb_sum
    hist = into.histogram
    for index, count in other.histogram.items():
        hist[index] = hist.get(index, 0) + count
    into.bytes_sent += other.bytes_sent
    into.bytes_received += other.bytes_received
    into.injected_latency_sum += other.injected_latency_sum
    into.fault_count += other.fault_count
    into.session_count += other.session_count
    into.session_duration_sum += other.session_duration_sum
    if other.active_connections > into.active_connections:
        into.active_connections = other.active_connections


def merge_client_delta(into: ClientDelta, other: ClientDelta) -> None:
    """Add ``other``'s counters into ``into``; endpoints past MAX_CLIENT_ENDPOINTS go to __other__."""
    into.request_count += other.request_count
    into.error_count += other.error_count
    into.latency_count += other.latency_count
    into.latency_sum += other.latency_sum
    into.bytes_sent += other.bytes_sent
    into.bytes_received += other.bytes_received
    eps = into.endpoints
    for name, count in other.endpoints.items():
        if name not in eps and len(eps) >= MAX_CLIENT_ENDPOINTS:
            name = OTHER
        eps[name] = eps.get(name, 0) + count


def series_index_key(k: SeriesKey) -> tuple[Any, ...]:
    """The recorder's lookup tuple for a series (source and instance are not part of it)."""
    return (k.minute, k.protocol, k.method, k.endpoint, k.status_code, k.workspace_id, k.environment,
            k.test_run)  # fmt: skip


def client_index_key(k: ClientKey) -> tuple[Any, ...]:
    """The recorder's lookup tuple for a client hour (instance is not part of it)."""
    return (k.hour, k.client_id, k.user_agent, k.protocol, k.workspace_id, k.environment, k.test_run)


def merged(older: Mapping[K, V], newer: Mapping[K, V], merge: Callable[[V, V], None]) -> dict[K, V]:
    """A new dict: ``older``'s entries first (so "oldest" stays in front), ``newer``'s merged in
    (``merge(old, new)`` adds into the older delta) or added."""
    out = dict(older)
    for key, delta in newer.items():
        old = out.get(key)
        if old is None:
            out[key] = delta
        else:
            merge(old, delta)
    return out
