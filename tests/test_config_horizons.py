"""retention.minute_histograms_days / hour_histograms_days: defaults, caps and errors naming the key."""

from __future__ import annotations

import pytest

from mockforge_analytics_plugin.config_parse import ConfigError, parse_config

PREFIX = "plugins.analytics.retention."


def test_defaults_are_one_day_of_minute_and_seven_days_of_hour_histograms() -> None:
    retention = parse_config({}).retention
    assert (retention.minute_histograms_days, retention.hour_histograms_days) == (1, 7)
    retention = parse_config({"retention": {"cleanup_interval_hours": 6}}).retention
    assert (retention.minute_histograms_days, retention.hour_histograms_days) == (1, 7)


def test_explicit_horizons_are_kept() -> None:
    retention = parse_config(
        {"retention": {"minute_histograms_days": 2, "hour_histograms_days": 30}}
    ).retention
    assert (retention.minute_histograms_days, retention.hour_histograms_days) == (2, 30)


def test_a_default_horizon_shrinks_to_a_shorter_tier_retention() -> None:
    retention = parse_config(
        {"retention": {"minute_aggregates_days": 0.5, "hour_aggregates_days": 3}}
    ).retention
    assert (retention.minute_histograms_days, retention.hour_histograms_days) == (0.5, 3)
    # The minute horizon also follows a shorter hour horizon.
    retention = parse_config({"retention": {"hour_histograms_days": 0.25}}).retention
    assert retention.minute_histograms_days == 0.25


@pytest.mark.parametrize(
    ("retention", "key", "says"),
    [
        ({"minute_histograms_days": 8}, "minute_histograms_days", "minute_aggregates_days (7)"),
        ({"hour_histograms_days": 31}, "hour_histograms_days", "hour_aggregates_days (30)"),
        (
            {"minute_aggregates_days": 2, "minute_histograms_days": 3},
            "minute_histograms_days",
            "minute_aggregates_days (2)",
        ),
        (
            {"minute_histograms_days": 3, "hour_histograms_days": 2},
            "minute_histograms_days",
            "hour_histograms_days (2)",
        ),
        ({"minute_histograms_days": 0}, "minute_histograms_days", "> 0"),
        ({"hour_histograms_days": "week"}, "hour_histograms_days", "> 0"),
    ],
)
def test_bad_horizons_name_the_key(retention: dict, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"retention": retention})
    assert err.value.key == PREFIX + key
    assert says in str(err.value)
