"""Hour-level totals for the traffic-patterns heatmap, split across tiers by the part-1 reader.

Whole hours come from ``metrics_aggregates_hour`` where the roll-up markers say they are complete
(dirty hours excluded) and from minute rows grouped by hour elsewhere, so the answer never
depends on whether a roll-up (or ``traffic_patterns``) has been written yet.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import aiosqlite

from ..params import SERIES_FILTERS, QueryParams
from .queries import read_markers, sum_counters

__all__ = ["SERIES_FILTER_COLUMNS", "HourTotals", "hourly_totals"]

SERIES_FILTER_COLUMNS = {name: name for name in SERIES_FILTERS}
HourTotals = dict[int, list[float]]  # hour start -> [requests, errors, latency_sum, latency_count]


async def hourly_totals(db: aiosqlite.Connection, p: QueryParams, start: int, end: int) -> HourTotals:
    """Totals per UTC hour start in [start, end) (both hour-aligned), filtered by ``p``'s filters."""
    window = replace(p, start=start, end=end, granularity="hour")
    # Counters declares its fields through __slots__ built from a tuple: typed Any for mypy.
    sums: dict[tuple[Any, ...], Any] = await sum_counters(db, window, await read_markers(db), step=3600)
    return {
        int(key[0]): [c.request_count, c.error_count, c.latency_sum, c.latency_count]
        for key, c in sums.items()
        if c.request_count or c.latency_count
    }
