"""The plugin's config section: defaults, types, and errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mockforge_analytics_plugin.config import AnalyticsConfig, RetentionConfig
from mockforge_analytics_plugin.config_parse import ConfigError, parse_config, redacted


def test_empty_section_gives_documented_defaults(tmp_path: Path) -> None:
    cfg = parse_config({}, data_dir=tmp_path)
    assert cfg.enabled is True
    assert cfg.mount_path == "/analytics"
    assert cfg.flush_interval_seconds == 1.0
    assert cfg.batch_size == 1000
    assert cfg.max_query_results == 10000
    assert (cfg.max_endpoints, cfg.max_clients, cfg.max_test_runs) == (1000, 1000, 100)
    assert cfg.max_buffered_events == 100000
    assert cfg.recent_requests == 1000
    assert cfg.test_run_header == "X-Test-Run"
    assert cfg.graphql_paths == ("/graphql",)
    assert cfg.exclude_paths == ("/metrics", "/__mockforge/*")
    assert cfg.prometheus_preset == "mockforge"
    assert cfg.prometheus_backfill_minutes == 60
    assert cfg.retention == RetentionConfig(7, 30, 365, 7, 30, 90, 90, 1, 1, 7)
    assert cfg.max_error_events_per_minute == 6
    # The database file sits next to the config file unless told otherwise.
    assert cfg.database_path == str(tmp_path / "mockforge-analytics.db")


def test_relative_database_path_resolves_against_config_folder(tmp_path: Path) -> None:
    cfg = parse_config({"database_path": "data/a.db"}, data_dir=tmp_path)
    assert cfg.database_path == str(tmp_path / "data" / "a.db")
    assert parse_config({"database_path": ":memory:"}, data_dir=tmp_path).database_path == ":memory:"


def test_every_key_is_accepted_with_a_valid_value(tmp_path: Path) -> None:
    section = {
        "enabled": True,
        "database_path": "x.db",
        "mount_path": "/stats",
        "instance": "ci-1",
        "flush_interval_seconds": 0.5,
        "rollup_interval_hours": 2,
        "aggregation_interval_seconds": 30,
        "batch_size": 500,
        "max_query_results": 50,
        "max_endpoints": 10,
        "max_clients": 20,
        "max_test_runs": 3,
        "max_buffered_events": 1000,
        "max_error_events_per_minute": 10,
        "recent_requests": 50,
        "client_id_header": "X-Client-Id",
        "trusted_proxies": ["10.0.0.1", "192.168.0.0/16"],
        "test_run_header": "X-Run",
        "graphql_paths": ["/gql"],
        "exclude_paths": ["/health"],
        "prometheus_url": "http://127.0.0.1:9090/",
        "prometheus_selector": 'job="mock"',
        "prometheus_preset": "starlette_exporter",
        "prometheus_backfill_minutes": 5,
        "auth": {"token": "a-long-enough-token-value"},
        "retention": {"minute_aggregates_days": 1, "cleanup_interval_hours": 6},
    }
    cfg = parse_config(section, data_dir=tmp_path)
    assert cfg.mount_path == "/stats"
    assert cfg.trusted_proxies == ("10.0.0.1", "192.168.0.0/16")
    assert cfg.prometheus_url == "http://127.0.0.1:9090"
    assert cfg.retention.minute_aggregates_days == 1
    assert cfg.retention.hour_aggregates_days == 30
    assert cfg.auth is not None and cfg.auth.token == "a-long-enough-token-value"
    names = {f.name for f in dataclasses.fields(AnalyticsConfig)} - {"database_url", "prometheus_mapping"}
    assert names <= set(section), "every documented key is exercised here"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"colour": "red"}, "plugins.analytics.colour"),
        ({"enabled": "yes"}, "plugins.analytics.enabled"),
        ({"flush_interval_seconds": 0}, "plugins.analytics.flush_interval_seconds"),
        ({"flush_interval_seconds": "1"}, "plugins.analytics.flush_interval_seconds"),
        ({"batch_size": 1.5}, "plugins.analytics.batch_size"),
        ({"max_endpoints": True}, "plugins.analytics.max_endpoints"),
        ({"mount_path": "analytics"}, "plugins.analytics.mount_path"),
        ({"mount_path": "/a/"}, "plugins.analytics.mount_path"),
        ({"client_id_header": "X Client"}, "plugins.analytics.client_id_header"),
        ({"trusted_proxies": ["not-an-ip"]}, "plugins.analytics.trusted_proxies"),
        ({"trusted_proxies": "10.0.0.1"}, "plugins.analytics.trusted_proxies"),
        ({"graphql_paths": ["graphql"]}, "plugins.analytics.graphql_paths"),
        ({"prometheus_url": "localhost:9090"}, "plugins.analytics.prometheus_url"),
        ({"prometheus_preset": "nope"}, "plugins.analytics.prometheus_preset"),
        ({"prometheus_preset": "custom"}, "plugins.analytics.prometheus_mapping"),
        ({"database_url": "mysql://x"}, "plugins.analytics.database_url"),
        ({"database_url": "postgresql://u:p@127.0.0.1/test"}, "plugins.analytics.database_url"),
        ({"auth": {"token": "short"}}, "plugins.analytics.auth.token"),
        ({"auth": {"username": "a"}}, "plugins.analytics.auth"),
        ({"auth": {"token": "x" * 20, "pin": 1}}, "plugins.analytics.auth.pin"),
        ({"retention": {"minute_days": 1}}, "plugins.analytics.retention.minute_days"),
        ({"retention": {"error_events_days": -1}}, "plugins.analytics.retention.error_events_days"),
    ],
)
def test_bad_values_name_the_key(section: dict, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(section, data_dir=tmp_path)
    assert str(err.value).startswith(key + ":"), str(err.value)
    assert err.value.key == key


def test_redacted_hides_secrets() -> None:
    cfg = parse_config({"auth": {"username": "ada", "password": "s3cret-pass"}})
    data = redacted(cfg)
    assert data["auth"] == {"token": None, "username": "ada", "password": "***"}
    assert "s3cret" not in repr(data)
    token_cfg = parse_config({"auth": {"token": "t" * 32}})
    assert "t" * 32 not in repr(redacted(token_cfg))


@pytest.mark.parametrize(
    ("section", "key"),
    [
        (
            {"prometheus_preset": "custom", "prometheus_mapping": {"colour": "x"}},
            "plugins.analytics.prometheus_mapping.colour",
        ),
        ({"prometheus_selector": 'job="a"}) or vector(1'}, "plugins.analytics.prometheus_selector"),
    ],
)
def test_prometheus_settings_are_checked_at_startup(section: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(section)
    assert err.value.key == key, str(err.value)


def test_custom_prometheus_mapping_is_accepted() -> None:
    cfg = parse_config(
        {
            "prometheus_preset": "custom",
            "prometheus_mapping": {"counter": "my_requests_total", "path_label": "route"},
            "prometheus_selector": 'job="mock"',
        }
    )
    assert cfg.prometheus_mapping == {"counter": "my_requests_total", "path_label": "route"}
