"""The overview and endpoint pages say when a window's percentiles were widened past a horizon.

Same store as test_query_horizons: 52 h of traffic from DAY0, rolled up, then the horizons applied
at NOW with one day of minute histograms and two of hour histograms.
"""

from __future__ import annotations

import pytest
from query_testdata import DAY0, HOUR, NOW, make_api, make_events

from mockforge_analytics_plugin.config import RetentionConfig
from mockforge_analytics_plugin.pagesource import QuerySource
from mockforge_analytics_plugin.params import COMMON_PARAMS, parse_params
from mockforge_analytics_plugin.store.horizons import apply_histogram_horizons

EVENTS = make_events()
LIMITS = RetentionConfig(minute_histograms_days=1, hour_histograms_days=2)


@pytest.fixture
async def source(tmp_path):
    client, store = await make_api(tmp_path, EVENTS, until_hour=DAY0 + 52 * HOUR, until_day=DAY0 + 2 * 86400)
    await apply_histogram_horizons(store.writer, LIMITS, NOW)
    yield QuerySource(client._transport.app.state.runtime)
    await client.aclose()
    await store.close()


def window(start: int, end: int, granularity: str = "minute"):
    query = {"start_time": str(start), "end_time": str(end), "granularity": granularity}
    return parse_params(query, allowed=COMMON_PARAMS, now=NOW)


async def test_an_old_window_names_the_hours_its_percentiles_come_from(source):
    note = await source.percentile_note(window(DAY0 + 30 * HOUR + 600, DAY0 + 40 * HOUR))
    assert "histogram horizon" in note and "whole hours" in note


async def test_a_window_past_the_hour_horizon_names_days(source):
    note = await source.percentile_note(window(DAY0 + 10 * HOUR, DAY0 + 10 * HOUR + 1800))
    assert "whole days" in note


async def test_a_recent_window_has_no_note(source):
    assert await source.percentile_note(window(DAY0 + 48 * HOUR + 420, DAY0 + 51 * HOUR + 60)) == ""
