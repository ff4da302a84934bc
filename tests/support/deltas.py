"""SeriesDelta built from a list of latencies, the way the recorder would sum them."""

from __future__ import annotations

from mockforge_analytics_plugin import histogram
from mockforge_analytics_plugin.snapshot import SeriesDelta


def series_delta(latencies: list[float], errors: int = 0, sent: int = 0, received: int = 0) -> SeriesDelta:
    """One series' delta: counts, sum, min, max and histogram of ``latencies`` (ms)."""
    d = SeriesDelta(
        request_count=len(latencies), error_count=errors, bytes_sent=sent, bytes_received=received
    )
    for v in latencies:
        d.latency_count += 1
        d.latency_sum += v
        d.latency_min = v if d.latency_min is None else min(d.latency_min, v)
        d.latency_max = v if d.latency_max is None else max(d.latency_max, v)
        b = histogram.bucket_index(v)
        d.histogram[b] = d.histogram.get(b, 0) + 1
    return d
