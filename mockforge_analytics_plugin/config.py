"""The plugin's configuration: the `plugins.analytics` section of the host config, typed."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_DATABASE_PATH", "AnalyticsConfig", "AuthConfig", "RetentionConfig"]

DEFAULT_DATABASE_PATH = "mockforge-analytics.db"


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """Age limits per table (days), how often retention runs, and the histogram horizons.

    Past a histogram horizon a tier's rows keep their counters but lose their latency
    histogram (and stored p50/p95/p99); percentiles of that period come from the next coarser
    tier (docs/storage.md). The horizons never exceed their tier's own retention.
    """

    minute_aggregates_days: float = 7
    hour_aggregates_days: float = 30
    day_aggregates_days: float = 365
    error_events_days: float = 7
    client_analytics_days: float = 30
    traffic_patterns_days: float = 90
    snapshots_days: float = 90
    # Hourly, not the original's 24: a window then never holds more than an hour past its limit
    # (at 24 h a 7-day table held up to 8 days before each run), and each run is small.
    cleanup_interval_hours: float = 1
    minute_histograms_days: float = 1
    hour_histograms_days: float = 7


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Either a bearer token or a username/password pair (basic auth)."""

    token: str | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    """Every key of `plugins.analytics`, with its default (README documents each)."""

    enabled: bool = True
    database_path: str = DEFAULT_DATABASE_PATH  # resolved against the config file's folder
    database_url: str | None = None
    mount_path: str = "/analytics"
    instance: str | None = None  # None: "host:port" of the listening host
    flush_interval_seconds: float = 1.0
    rollup_interval_hours: float = 1.0
    aggregation_interval_seconds: float = 60.0
    batch_size: int = 1000
    max_query_results: int = 10000
    max_endpoints: int = 1000
    max_clients: int = 1000
    max_test_runs: int = 100
    max_buffered_events: int = 100000
    # Samples with trace ids, about one per 10 s; exact error counts are in the aggregates. At 60 a
    # minute error events were the largest table over 7 days (docs/storage.md).
    max_error_events_per_minute: int = 6
    recent_requests: int = 1000
    client_id_header: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    test_run_header: str = "X-Test-Run"
    graphql_paths: tuple[str, ...] = ("/graphql",)
    exclude_paths: tuple[str, ...] = ("/metrics", "/__mockforge/*")
    prometheus_url: str | None = None
    prometheus_selector: str | None = None
    prometheus_preset: str = "mockforge"
    prometheus_backfill_minutes: int = 60
    prometheus_mapping: dict[str, str] | None = None  # custom preset: metric and label names
    auth: AuthConfig | None = None
    retention: RetentionConfig = field(default_factory=RetentionConfig)
