"""Which tier answers which part of a window: roll-up markers, the tier split, histogram horizons.

A window ``[start, end)`` (minute-aligned) is answered from whole days of the day table (days
before ``rolled_up_until_day``), whole hours of the hour table (before ``rolled_up_until_hour``)
and minute rows for the ragged edges and the periods not rolled up yet (:func:`split_window`).
Each minute is therefore read exactly once, from the finest tier or from a roll-up that is known
to equal its minutes, so the totals never depend on whether a roll-up has run.

Percentiles follow the histogram horizons (store/horizons.py, docs/storage.md): minute rows older
than ``minute_histograms_from`` and hour rows older than ``hour_histograms_from`` keep their
counters but no histogram. :func:`histogram_ranges` widens such a piece to the enclosing hours
(or days) of the next coarser tier, so a percentile there is exact (within the histograms' 1 %)
for the widened window; counters are never widened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiosqlite

__all__ = [
    "HOUR_HISTOGRAMS_FROM",
    "MINUTE_HISTOGRAMS_FROM",
    "TIER_TABLES",
    "Markers",
    "TierRange",
    "coarsest_for",
    "histogram_ranges",
    "percentile_bucket",
    "read_markers",
    "split_window",
    "widened_ranges",
]

TIER_TABLES = {
    "minute": ("metrics_aggregates_minute", 60),
    "hour": ("metrics_aggregates_hour", 3600),
    "day": ("metrics_aggregates_day", 86400),
}
_TIER_ORDER = ("minute", "hour", "day")
# analytics_state keys of the histogram horizons: the first minute (hour) bucket start whose
# rows still hold histograms; every row before it is slim (store/horizons.py writes them).
MINUTE_HISTOGRAMS_FROM = "minute_histograms_from"
HOUR_HISTOGRAMS_FROM = "hour_histograms_from"


@dataclass(frozen=True, slots=True)
class Markers:
    """Roll-up progress: every hour (day) starting before the marker equals the sum of its minutes.

    `minute_histograms` / `hour_histograms`: minute (hour) rows starting before them have no
    histogram (0: every row keeps its histogram).
    """

    hour: int = 0
    day: int = 0
    minute_histograms: int = 0
    hour_histograms: int = 0


@dataclass(frozen=True, slots=True)
class TierRange:
    """Read `table` rows with timestamp in [start, end).

    `widened` > 0 marks a percentile read widened past a histogram horizon: its rows are keyed by
    buckets of that many seconds (3600 or 86400) whatever the requested step.
    """

    tier: str
    start: int
    end: int
    widened: int = 0

    @property
    def table(self) -> str:
        """The tier's table name."""
        return TIER_TABLES[self.tier][0]


_MARKER_KEYS = ("rolled_up_until_hour", "rolled_up_until_day", MINUTE_HISTOGRAMS_FROM, HOUR_HISTOGRAMS_FROM)


async def read_markers(conn: aiosqlite.Connection) -> Markers:
    """Roll-up progress: the stored markers, pulled back to the first dirty hour/day.

    A minute flushed after its hour was rolled up marks the hour (and day) dirty in the same
    transaction, before the next roll-up moves the stored marker; folding the dirty marks in
    here keeps such an hour read from its minutes, so the totals stay exact.
    """
    values = dict.fromkeys(_MARKER_KEYS, 0)
    async with conn.execute(
        f"SELECT key, value FROM analytics_state WHERE key IN ({', '.join('?' * len(_MARKER_KEYS))})",
        _MARKER_KEYS,
    ) as cur:
        for key, value in await cur.fetchall():
            try:
                values[key] = int(float(value))
            except ValueError:  # a corrupt marker means "nothing known complete": read minutes
                values[key] = 0
    hour, day = values["rolled_up_until_hour"], values["rolled_up_until_day"]
    async with conn.execute(
        "SELECT (SELECT MIN(timestamp) FROM rollup_dirty WHERE tier = 'hour'),"
        " (SELECT MIN(timestamp) FROM rollup_dirty WHERE tier = 'day')"
    ) as cur:
        dirty_hour, dirty_day = await cur.fetchone() or (None, None)
    if dirty_hour is not None:
        hour = min(hour, int(dirty_hour) // 3600 * 3600)
        day = min(day, int(dirty_hour) // 86400 * 86400)
    if dirty_day is not None:
        day = min(day, int(dirty_day) // 86400 * 86400)
    return Markers(
        hour=hour,
        day=day,
        minute_histograms=values[MINUTE_HISTOGRAMS_FROM] // 3600 * 3600,
        hour_histograms=values[HOUR_HISTOGRAMS_FROM] // 86400 * 86400,
    )


def split_window(start: int, end: int, markers: Markers, coarsest: str = "day") -> list[TierRange]:
    """Split minute-aligned [start, end) into tier ranges in time order, no tier coarser than `coarsest`."""
    allowed = _TIER_ORDER[: _TIER_ORDER.index(coarsest) + 1]
    pieces = [TierRange("minute", start, end)]
    for tier in ("day", "hour"):
        if tier not in allowed:
            continue
        step = TIER_TABLES[tier][1]
        marker = getattr(markers, tier) // step * step  # an unaligned marker covers only whole periods
        out: list[TierRange] = []
        for piece in pieces:
            if piece.tier != "minute":
                out.append(piece)
                continue
            lo = -(-piece.start // step) * step
            hi = min(piece.end // step * step, marker)
            if hi <= lo:
                out.append(piece)
                continue
            if piece.start < lo:
                out.append(TierRange("minute", piece.start, lo))
            out.append(TierRange(tier, lo, hi))
            if hi < piece.end:
                out.append(TierRange("minute", hi, piece.end))
        pieces = out
    return pieces


def widened_ranges(start: int, end: int, markers: Markers, coarsest: str = "day") -> list[TierRange]:
    """The parts of [start, end) whose percentiles come from a coarser tier, widened, in time order.

    Each is (coarser tier, whole hours or days enclosing the part, widened = their width). A
    minute piece older than ``markers.minute_histograms`` widens to its hours; an hour (or
    widened) piece older than ``markers.hour_histograms`` to its days. Empty when nothing is past
    a horizon.
    """
    out: list[TierRange] = []
    for piece in split_window(start, end, markers, coarsest):
        if piece.tier == "day":
            continue
        lo, hi = piece.start, piece.end
        if piece.tier == "minute":
            edge = min(hi, markers.minute_histograms)
            if lo >= edge:
                continue
            lo, hi = lo // 3600 * 3600, -(-edge // 3600) * 3600
            widened = 3600
        else:
            widened = 0
        edge = min(hi, markers.hour_histograms)
        if lo < edge:  # the part older than the hour horizon widens again, to whole days
            _append_range(out, TierRange("day", lo // 86400 * 86400, -(-edge // 86400) * 86400, 86400))
            lo = edge
        if widened and lo < hi:
            _append_range(out, TierRange("hour", lo, hi, widened))
    return out


def _append_range(out: list[TierRange], r: TierRange) -> None:
    """Append in time order, folding a range into the previous one of its tier when they meet."""
    last = out[-1] if out else None
    if last is not None and last.tier == r.tier and r.start <= last.end:
        out[-1] = TierRange(r.tier, last.start, max(last.end, r.end), r.widened)
    else:
        out.append(r)


def histogram_ranges(start: int, end: int, markers: Markers, coarsest: str = "day") -> list[TierRange]:
    """What to read for the percentiles of [start, end): tier ranges, widened past the horizons.

    The parts of :func:`widened_ranges` are read from their coarser tier plus every finer tier
    over the same span (rows there hold only late data not yet folded into the coarser row, see
    store/horizons.py), all keyed by the widened bucket; the rest as :func:`split_window`.
    """
    widened = widened_ranges(start, end, markers, coarsest)
    if not widened:
        return split_window(start, end, markers, coarsest)
    out: list[TierRange] = []
    for piece in split_window(start, end, markers, coarsest):
        for lo, hi in _outside(piece.start, piece.end, widened):
            out.append(TierRange(piece.tier, lo, hi))
    for r in widened:
        for tier in _TIER_ORDER[: _TIER_ORDER.index(r.tier) + 1]:
            out.append(TierRange(tier, r.start, r.end, r.widened))
    out.sort(key=lambda t: (t.start, t.end))
    return out


def _outside(start: int, end: int, ranges: Sequence[TierRange]) -> list[tuple[int, int]]:
    """The parts of [start, end) covered by none of `ranges` (sorted, disjoint)."""
    parts = []
    for r in ranges:
        if r.end <= start or r.start >= end:
            continue
        if r.start > start:
            parts.append((start, r.start))
        start = max(start, r.end)
    if start < end:
        parts.append((start, end))
    return parts


def percentile_bucket(start: int, end: int, step: int, markers: Markers) -> Callable[[int], int]:
    """Map a bucket start of `step` to the bucket its percentiles were merged under.

    That is the bucket itself, or past a horizon the start of the enclosing hour or day when it
    is wider than `step` (the keys iter_histograms gives widened rows).
    """
    widened = [r for r in widened_ranges(start, end, markers, coarsest_for(step)) if r.widened > step]
    if not widened:
        return lambda b: b

    def key(b: int) -> int:
        for r in widened:
            if r.start <= b < r.end:
                return b // r.widened * r.widened
        return b

    return key


def coarsest_for(step: int | None) -> str:
    """The coarsest tier whose rows fit inside one bucket of `step` seconds."""
    if step is None:
        return "day"
    for tier in ("day", "hour", "minute"):
        if step % TIER_TABLES[tier][1] == 0:
            return tier
    raise ValueError(f"bucket width must be a multiple of 60 s, got {step}")
