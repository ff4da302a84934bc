-- Initial schema. Append-only: never edit an applied file; add 0002_*.sql instead.
-- Times are Unix seconds (UTC), bucket starts aligned to 60/3600/86400. Latencies are ms.
-- Series dimensions live once in `series`; aggregate rows are keyed (timestamp, series_id)
-- WITHOUT ROWID, so a time-range scan reads contiguous pages and the flush can upsert deltas.
-- Absent dimensions are '' (never NULL) so unique keys hold.

CREATE TABLE series (
    series_id     INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    instance      TEXT NOT NULL,
    protocol      TEXT NOT NULL,
    method        TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    status_code   INTEGER NOT NULL,
    workspace_id  TEXT NOT NULL,
    environment   TEXT NOT NULL,
    test_run      TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (source, instance, protocol, method, endpoint, status_code, workspace_id, environment, test_run)
);

-- Histogram: packed little-endian (uint16 bucket index, uint32 count) pairs, sorted by index.
-- Bucket i covers latencies (gamma^(i-1), gamma^i] microseconds, gamma = 1.01/0.99.
CREATE TABLE metrics_aggregates_minute (
    timestamp             INTEGER NOT NULL,
    series_id             INTEGER NOT NULL REFERENCES series (series_id),
    request_count         INTEGER NOT NULL DEFAULT 0,
    error_count           INTEGER NOT NULL DEFAULT 0,
    latency_count         INTEGER NOT NULL DEFAULT 0,
    latency_sum           REAL NOT NULL DEFAULT 0,
    latency_min           REAL,
    latency_max           REAL,
    latency_p50           REAL,
    latency_p95           REAL,
    latency_p99           REAL,
    ttfb_sum              REAL NOT NULL DEFAULT 0,
    histogram             BLOB,
    bytes_sent            INTEGER NOT NULL DEFAULT 0,
    bytes_received        INTEGER NOT NULL DEFAULT 0,
    injected_latency_sum  REAL NOT NULL DEFAULT 0,
    fault_count           INTEGER NOT NULL DEFAULT 0,
    session_count         INTEGER NOT NULL DEFAULT 0,
    session_duration_sum  REAL NOT NULL DEFAULT 0,
    active_connections    INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    PRIMARY KEY (timestamp, series_id)
) WITHOUT ROWID;

CREATE TABLE metrics_aggregates_hour (
    timestamp               INTEGER NOT NULL,
    series_id               INTEGER NOT NULL REFERENCES series (series_id),
    request_count           INTEGER NOT NULL DEFAULT 0,
    error_count             INTEGER NOT NULL DEFAULT 0,
    latency_count           INTEGER NOT NULL DEFAULT 0,
    latency_sum             REAL NOT NULL DEFAULT 0,
    latency_min             REAL,
    latency_max             REAL,
    latency_p50             REAL,
    latency_p95             REAL,
    latency_p99             REAL,
    ttfb_sum                REAL NOT NULL DEFAULT 0,
    histogram               BLOB,
    bytes_sent              INTEGER NOT NULL DEFAULT 0,
    bytes_received          INTEGER NOT NULL DEFAULT 0,
    injected_latency_sum    REAL NOT NULL DEFAULT 0,
    fault_count             INTEGER NOT NULL DEFAULT 0,
    session_count           INTEGER NOT NULL DEFAULT 0,
    session_duration_sum    REAL NOT NULL DEFAULT 0,
    active_connections_avg  REAL NOT NULL DEFAULT 0,
    active_connections_max  INTEGER NOT NULL DEFAULT 0,
    created_at              INTEGER NOT NULL,
    PRIMARY KEY (timestamp, series_id)
) WITHOUT ROWID;

CREATE TABLE metrics_aggregates_day (
    timestamp               INTEGER NOT NULL,
    series_id               INTEGER NOT NULL REFERENCES series (series_id),
    date                    TEXT NOT NULL,  -- YYYY-MM-DD (UTC)
    request_count           INTEGER NOT NULL DEFAULT 0,
    error_count             INTEGER NOT NULL DEFAULT 0,
    latency_count           INTEGER NOT NULL DEFAULT 0,
    latency_sum             REAL NOT NULL DEFAULT 0,
    latency_min             REAL,
    latency_max             REAL,
    latency_p50             REAL,
    latency_p95             REAL,
    latency_p99             REAL,
    ttfb_sum                REAL NOT NULL DEFAULT 0,
    histogram               BLOB,
    bytes_sent              INTEGER NOT NULL DEFAULT 0,
    bytes_received          INTEGER NOT NULL DEFAULT 0,
    injected_latency_sum    REAL NOT NULL DEFAULT 0,
    fault_count             INTEGER NOT NULL DEFAULT 0,
    session_count           INTEGER NOT NULL DEFAULT 0,
    session_duration_sum    REAL NOT NULL DEFAULT 0,
    active_connections_avg  REAL NOT NULL DEFAULT 0,
    active_connections_max  INTEGER NOT NULL DEFAULT 0,
    unique_clients          INTEGER NOT NULL DEFAULT 0,
    peak_hour               INTEGER,  -- 0-23 UTC, the hour with most requests
    created_at              INTEGER NOT NULL,
    PRIMARY KEY (timestamp, series_id)
) WITHOUT ROWID;

-- Which minutes changed since their hour/day was last rolled up (flush marks, roll-up clears).
CREATE TABLE rollup_dirty (
    tier       TEXT NOT NULL,     -- 'hour' or 'day'
    timestamp  INTEGER NOT NULL,  -- the hour or day start that must be recomputed
    PRIMARY KEY (tier, timestamp)
) WITHOUT ROWID;

-- Key/value markers, e.g. 'rolled_up_until_hour' (every hour before it is complete in the hour
-- table), 'rolled_up_until_day', per-source ingest positions.
CREATE TABLE analytics_state (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE endpoint_stats (
    id                    INTEGER PRIMARY KEY,
    endpoint              TEXT NOT NULL,
    protocol              TEXT NOT NULL,
    method                TEXT NOT NULL,
    workspace_id          TEXT NOT NULL,
    environment           TEXT NOT NULL,
    total_requests        INTEGER NOT NULL DEFAULT 0,
    total_errors          INTEGER NOT NULL DEFAULT 0,
    avg_latency_ms        REAL,
    min_latency_ms        REAL,
    max_latency_ms        REAL,
    p95_latency_ms        REAL,
    status_codes          TEXT NOT NULL DEFAULT '{}',  -- JSON map code -> count
    total_bytes_sent      INTEGER NOT NULL DEFAULT 0,
    total_bytes_received  INTEGER NOT NULL DEFAULT 0,
    first_seen            INTEGER NOT NULL,
    last_seen             INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    UNIQUE (endpoint, protocol, method, workspace_id, environment)
);

CREATE TABLE error_events (
    id              INTEGER PRIMARY KEY,
    timestamp       REAL NOT NULL,
    source          TEXT NOT NULL DEFAULT 'middleware',
    instance        TEXT NOT NULL,
    protocol        TEXT NOT NULL,
    method          TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    path            TEXT NOT NULL,
    status_code     INTEGER NOT NULL,
    error_type      TEXT NOT NULL,
    error_message   TEXT NOT NULL DEFAULT '',
    error_category  TEXT NOT NULL,
    request_id      TEXT NOT NULL DEFAULT '',
    trace_id        TEXT NOT NULL DEFAULT '',
    span_id         TEXT NOT NULL DEFAULT '',
    client_ip       TEXT NOT NULL DEFAULT '',  -- the client id (peer, header or forwarded)
    user_agent      TEXT NOT NULL DEFAULT '',
    workspace_id    TEXT NOT NULL,
    environment     TEXT NOT NULL,
    test_run        TEXT NOT NULL DEFAULT '',
    fault_injected  INTEGER NOT NULL DEFAULT 0,
    metadata        TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL
);
CREATE INDEX error_events_by_time ON error_events (timestamp);

CREATE TABLE client_analytics (
    timestamp           INTEGER NOT NULL,  -- hour start
    instance            TEXT NOT NULL,
    client_ip           TEXT NOT NULL,     -- the client id
    user_agent          TEXT NOT NULL,
    user_agent_family   TEXT NOT NULL DEFAULT '',
    user_agent_version  TEXT NOT NULL DEFAULT '',
    protocol            TEXT NOT NULL,
    workspace_id        TEXT NOT NULL,
    environment         TEXT NOT NULL,
    test_run            TEXT NOT NULL,
    request_count       INTEGER NOT NULL DEFAULT 0,
    error_count         INTEGER NOT NULL DEFAULT 0,
    latency_count       INTEGER NOT NULL DEFAULT 0,
    latency_sum         REAL NOT NULL DEFAULT 0,
    avg_latency_ms      REAL,
    bytes_sent          INTEGER NOT NULL DEFAULT 0,
    bytes_received      INTEGER NOT NULL DEFAULT 0,
    endpoint_counts     TEXT NOT NULL DEFAULT '{}',  -- JSON {"GET /x": n}, capped
    top_endpoints       TEXT NOT NULL DEFAULT '[]',  -- JSON list, most requested first
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (timestamp, instance, client_ip, user_agent, protocol, workspace_id, environment, test_run)
) WITHOUT ROWID;

CREATE TABLE traffic_patterns (
    id              INTEGER PRIMARY KEY,
    timestamp       INTEGER NOT NULL,  -- hour start (UTC)
    date            TEXT NOT NULL,     -- YYYY-MM-DD (UTC)
    hour            INTEGER NOT NULL,  -- 0-23 (UTC)
    day_of_week     INTEGER NOT NULL,  -- 0 = Monday ... 6 = Sunday (ISO)
    protocol        TEXT NOT NULL,
    workspace_id    TEXT NOT NULL,
    environment     TEXT NOT NULL,
    request_count   INTEGER NOT NULL DEFAULT 0,
    error_count     INTEGER NOT NULL DEFAULT 0,
    latency_sum     REAL NOT NULL DEFAULT 0,
    latency_count   INTEGER NOT NULL DEFAULT 0,
    avg_latency_ms  REAL,
    unique_clients  INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    UNIQUE (date, hour, protocol, workspace_id, environment)
);
CREATE INDEX traffic_patterns_by_time ON traffic_patterns (timestamp);

CREATE TABLE analytics_snapshots (
    id                  INTEGER PRIMARY KEY,
    timestamp           INTEGER NOT NULL,
    snapshot_type       TEXT NOT NULL,  -- hourly | daily | weekly
    instance            TEXT NOT NULL DEFAULT '',
    total_requests      INTEGER NOT NULL DEFAULT 0,
    total_errors        INTEGER NOT NULL DEFAULT 0,
    avg_latency_ms      REAL,
    active_connections  INTEGER NOT NULL DEFAULT 0,
    protocol_stats      TEXT NOT NULL DEFAULT '{}',
    top_endpoints       TEXT NOT NULL DEFAULT '[]',
    memory_usage_bytes  INTEGER,
    cpu_usage_percent   REAL,
    thread_count        INTEGER,
    uptime_seconds      REAL,
    buffered_requests   INTEGER NOT NULL DEFAULT 0,
    dropped_requests    INTEGER NOT NULL DEFAULT 0,
    workspace_id        TEXT NOT NULL DEFAULT '',
    environment         TEXT NOT NULL DEFAULT '',
    created_at          INTEGER NOT NULL,
    UNIQUE (timestamp, snapshot_type, instance, workspace_id, environment)
);
