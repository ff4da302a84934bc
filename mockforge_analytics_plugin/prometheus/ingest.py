"""Turn raw Prometheus counter samples at minute boundaries into exact per-minute series deltas.

Counts are differences of the raw counter values at consecutive minute boundaries (never
``increase()``, which extrapolates to fractions), taken per raw series and then summed into the
(instance, protocol, method, path, status) key:

* a series absent at every earlier boundary of the window counts from 0 at its first sample
  (exporters create a labelled series on its first request, so its whole value is new traffic);
* a value lower than the previous one is a counter reset (a restarted process): the new value
  is the increase;
* a boundary without a sample contributes nothing; the next sample is compared with the last
  one seen, so traffic during a scrape gap lands in the minute where it reappears.

Histogram buckets are differenced the same way per ``le``; each Prometheus bucket's count goes
to the log bucket (``histogram.bucket_index``) of its upper bound, and ``+Inf`` to the bucket of
the largest finite bound (as ``histogram_quantile`` does), so request_count, latency_count and
the histogram total agree and a percentile reads back as the upper bound of its Prometheus bucket.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .. import histogram as loghist
from ..snapshot import SeriesDelta, SeriesKey
from .client import PrometheusClient, PrometheusMalformedResponse
from .presets import Dims, Preset

__all__ = [
    "SOURCE",
    "RawSeries",
    "Window",
    "build_deltas",
    "cap_endpoints",
    "counter_increases",
    "fetch_window",
    "parse_series",
]

SOURCE = "prometheus"
STEP = 60
_MAX_ENDPOINT_CHARS = 512


@dataclass(slots=True)
class RawSeries:
    """One Prometheus series: its labels (``__name__`` removed) and its value at each boundary."""

    labels: dict[str, str]
    points: dict[int, float] = field(default_factory=dict)


@dataclass(slots=True)
class Window:
    """Raw samples of one ingest window: boundaries and the series of each metric."""

    boundaries: list[int]
    counter: list[RawSeries]
    buckets: list[RawSeries] = field(default_factory=list)
    sums: list[RawSeries] = field(default_factory=list)
    counts: list[RawSeries] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        """True when Prometheus returned no series at all for the window."""
        return not (self.counter or self.buckets or self.sums or self.counts)


def parse_series(data: Mapping[str, Any], *, url: str = "", query: str = "") -> list[RawSeries]:
    """Read a ``matrix`` or ``vector`` query answer into RawSeries; raise on a malformed answer."""
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type not in ("matrix", "vector") or not isinstance(result, list):
        raise PrometheusMalformedResponse(
            f"expected a matrix or vector, got resultType={result_type!r}", url=url, query=query
        )
    out: list[RawSeries] = []
    try:
        for item in result:
            labels = {str(k): str(v) for k, v in item["metric"].items() if k != "__name__"}
            pairs = item["values"] if result_type == "matrix" else [item["value"]]
            series = RawSeries(labels)
            for ts, value in pairs:
                number = float(value)
                if math.isfinite(number):
                    series.points[round(float(ts))] = number
            out.append(series)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PrometheusMalformedResponse(
            f"malformed series in answer ({type(exc).__name__}: {exc})", url=url, query=query
        ) from None
    return out


def counter_increases(points: Mapping[int, float], boundaries: Sequence[int]) -> dict[int, float]:
    """Return {minute start: increase} between consecutive boundaries (first seen from 0; resets)."""
    out: dict[int, float] = {}
    previous = points.get(boundaries[0]) if boundaries else None
    for start, end in itertools.pairwise(boundaries):
        current = points.get(end)
        if current is None:
            continue
        # First sample of a new series, or a reset (value went down): the whole value is new.
        increase = current if previous is None or current < previous else current - previous
        previous = current
        if increase > 0:
            out[start] = increase
    return out


def _key(minute: int, dims: Dims) -> SeriesKey:
    return SeriesKey(
        minute=minute,
        source=SOURCE,
        instance=dims.instance,
        protocol=dims.protocol,
        method=dims.method,
        endpoint=dims.endpoint[:_MAX_ENDPOINT_CHARS],
        status_code=dims.status_code,
        workspace_id="",
        environment="",
        test_run="",
    )


def _parse_le(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)  # "+Inf" parses to inf
    except ValueError:
        return None


def _bucket_counts(cumulative: Mapping[float, float]) -> dict[int, int]:
    """Map cumulative per-``le`` increases to log-bucket counts (``+Inf`` -> largest finite bound)."""
    finite = sorted(le for le in cumulative if math.isfinite(le))
    if not finite:
        return {}
    hist: dict[int, int] = {}
    below = 0.0
    for le in finite:
        count = cumulative[le] - below
        below = max(below, cumulative[le])
        if count > 0:
            index = loghist.bucket_index(le * 1000.0)
            hist[index] = hist.get(index, 0) + round(count)
    overflow = cumulative.get(math.inf, below) - below
    if overflow > 0:
        index = loghist.bucket_index(finite[-1] * 1000.0)
        hist[index] = hist.get(index, 0) + round(overflow)
    return {i: c for i, c in hist.items() if c > 0}


def build_deltas(
    preset: Preset, window: Window, *, max_endpoints: int | None = None
) -> dict[SeriesKey, SeriesDelta]:
    """Difference every raw series of a window and sum them into per-minute SeriesDeltas.

    With ``max_endpoints``, each minute keeps its busiest endpoints and folds the rest into
    ``__other__`` (an exporter that labels raw paths would otherwise grow the series table
    without bound).
    """
    bounds = window.boundaries
    deltas: dict[SeriesKey, SeriesDelta] = {}

    def delta(minute: int, dims: Dims) -> SeriesDelta:
        key = _key(minute, dims)
        found = deltas.get(key)
        if found is None:
            found = deltas[key] = SeriesDelta()
        return found

    for series in window.counter:
        dims = preset.dims(series.labels)
        for minute, inc in counter_increases(series.points, bounds).items():
            d = delta(minute, dims)
            d.request_count += round(inc)
            if dims.status_code >= 400:
                d.error_count += round(inc)

    websocket = "websocket"
    for series in window.counts:
        dims = preset.dims(series.labels)
        for minute, inc in counter_increases(series.points, bounds).items():
            d = delta(minute, dims)
            if dims.protocol == websocket:
                d.session_count += round(inc)  # sessions never enter HTTP latency
            else:
                d.latency_count += round(inc)
    for series in window.sums:
        dims = preset.dims(series.labels)
        for minute, inc in counter_increases(series.points, bounds).items():
            d = delta(minute, dims)
            if dims.protocol == websocket:
                d.session_duration_sum += inc * 1000.0
            else:
                d.latency_sum += inc * 1000.0

    cumulative: dict[tuple[int, Dims], dict[float, float]] = {}
    for series in window.buckets:
        le = _parse_le(series.labels.get("le"))
        if le is None:
            continue
        dims = preset.dims(series.labels)
        if dims.protocol == websocket:
            continue
        for minute, inc in counter_increases(series.points, bounds).items():
            per_le = cumulative.setdefault((minute, dims), {})
            per_le[le] = per_le.get(le, 0.0) + inc
    for (minute, dims), per_le in cumulative.items():
        hist = _bucket_counts(per_le)
        if hist:
            loghist.merge_into(delta(minute, dims).histogram, hist)
    kept = {k: d for k, d in deltas.items() if _has_data(d)}
    if max_endpoints is not None:
        kept = cap_endpoints(kept, max_endpoints)
    return kept


OTHER_ENDPOINT = "__other__"


def cap_endpoints(deltas: dict[SeriesKey, SeriesDelta], max_endpoints: int) -> dict[SeriesKey, SeriesDelta]:
    """Keep each minute's ``max_endpoints`` busiest endpoints; fold the others into ``__other__``."""
    volume: dict[int, dict[str, int]] = {}
    for key, d in deltas.items():
        per = volume.setdefault(key.minute, {})
        per[key.endpoint] = per.get(key.endpoint, 0) + d.request_count + d.latency_count + d.session_count
    keep: dict[int, set[str]] = {}
    for minute, per in volume.items():
        if len(per) > max_endpoints:
            ranked = sorted(per, key=lambda e: (-per[e], e))
            keep[minute] = set(ranked[: max(0, max_endpoints - 1)])  # one slot for __other__
    if not keep:
        return deltas
    out: dict[SeriesKey, SeriesDelta] = {}
    for key, d in deltas.items():
        allowed = keep.get(key.minute)
        if allowed is None or key.endpoint in allowed:
            out[key] = d
            continue
        other = replace(key, endpoint=OTHER_ENDPOINT)
        acc = out.get(other)
        if acc is None:
            acc = out[other] = SeriesDelta()
        acc.request_count += d.request_count
        acc.error_count += d.error_count
        acc.latency_count += d.latency_count
        acc.latency_sum += d.latency_sum
        acc.session_count += d.session_count
        acc.session_duration_sum += d.session_duration_sum
        loghist.merge_into(acc.histogram, d.histogram)
    return out


def _has_data(d: SeriesDelta) -> bool:
    return bool(d.request_count or d.latency_count or d.histogram or d.session_count)


def _expr(metric: str, selector: str) -> str:
    return f"{metric}{{{selector}}}" if selector else metric


async def fetch_window(
    client: PrometheusClient, preset: Preset, selector: str, first_minute: int, last_minute: int
) -> Window:
    """Query the raw samples at every boundary from first_minute to last_minute + 60 (step 60)."""
    start, end = first_minute, last_minute + STEP
    boundaries = list(range(start, end + 1, STEP))
    window = Window(boundaries=boundaries, counter=[])

    async def series_of(metric: str) -> list[RawSeries]:
        expr = _expr(metric, selector)
        window.queries.append(expr)
        data = await client.query_range(expr, start, end, STEP)
        return parse_series(data, url=client.public_url, query=expr)

    window.counter = await series_of(preset.counter_metric)
    if preset.histogram:
        window.buckets = await series_of(preset.histogram + "_bucket")
        window.sums = await series_of(preset.histogram + "_sum")
        count_metric = preset.histogram + "_count"
        window.counts = (
            window.counter if count_metric == preset.counter_metric else await series_of(count_metric)
        )
    return window


def minutes_of(window: Window) -> list[int]:
    """The minute starts a window covers (every boundary but the last)."""
    return list(window.boundaries[:-1])


def split_minutes(first_minute: int, last_minute: int, chunk: int) -> Iterable[tuple[int, int]]:
    """Yield (first, last) minute pairs of at most ``chunk`` minutes covering the range."""
    start = first_minute
    while start <= last_minute:
        stop = min(last_minute, start + (chunk - 1) * STEP)
        yield start, stop
        start = stop + STEP
