"""Helpers for the histogram-horizon tests: three days of traffic, rolled up, and row checks."""

from __future__ import annotations

from mockforge_analytics_plugin.config import AnalyticsConfig, RetentionConfig
from mockforge_analytics_plugin.rollup import Rollup
from mockforge_analytics_plugin.store.horizons import SLIM_COLUMNS
from mockforge_analytics_plugin.store.sqlite import SQLiteStore

from .rollup_data import Traffic, open_store, write

HOUR = 3600
DAY = 86400
T0 = 1795392000  # a midnight UTC
NOW = T0 + 3 * DAY + 120
LIMITS = RetentionConfig(minute_histograms_days=1, hour_histograms_days=2)
MINUTE_FROM = T0 + 2 * DAY  # whole hours older than NOW - 1 day
HOUR_FROM = T0 + DAY  # whole days older than NOW - 2 days
TABLES = ("metrics_aggregates_minute", "metrics_aggregates_hour", "metrics_aggregates_day")


def config() -> AnalyticsConfig:
    """The plugin config with the test's horizons (one day of minute, two of hour histograms)."""
    return AnalyticsConfig(retention=LIMITS)


async def filled(path, traffic: Traffic) -> SQLiteStore:
    """A store at `path` holding `traffic`, rolled up at NOW by the real roll-up."""
    store = await open_store(path)
    await write(store.writer, traffic, T0)
    await Rollup(store, config(), clock=lambda: NOW).rollup_once(NOW)
    return store


async def heavy(db, table: str, where: str) -> int:
    """Rows of `table` matching `where` that still hold a histogram or a stored percentile."""
    not_slim = " OR ".join(f"{c} IS NOT NULL" for c in SLIM_COLUMNS)
    rows = await db.execute_fetchall(f"SELECT COUNT(*) FROM {table} WHERE ({not_slim}) AND {where}")
    return rows[0][0]
