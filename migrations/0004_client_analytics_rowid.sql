-- client_analytics as a rowid table with its key as a UNIQUE index (issue 4, storage).
-- A WITHOUT ROWID table keeps at most ~1 KB of a row in its B-tree page (4 KB pages); the rest
-- goes to an overflow page of its own. A client row carries its endpoint counts as JSON (about
-- 1.2 KB for 30 endpoints), so every row took a 4 KB overflow page that was 80 % empty: measured
-- by benchmarks/storage_size.py (load-test mix, 1000 req/s, 30 days of client rows) as 34 MB of
-- pages for 10 MB of payload. A rowid table keeps rows up to ~4 KB in its leaf pages.
-- Same columns, same key (the flush's ON CONFLICT target), same time-range reads (the index
-- leads with timestamp); rows are copied in key order.

CREATE TABLE client_analytics_rowid (
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
    UNIQUE (timestamp, instance, client_ip, user_agent, protocol, workspace_id, environment, test_run)
);

INSERT INTO client_analytics_rowid
SELECT timestamp, instance, client_ip, user_agent, user_agent_family, user_agent_version, protocol,
       workspace_id, environment, test_run, request_count, error_count, latency_count, latency_sum,
       avg_latency_ms, bytes_sent, bytes_received, endpoint_counts, top_endpoints, created_at, updated_at
FROM client_analytics
ORDER BY timestamp, instance, client_ip, user_agent, protocol, workspace_id, environment, test_run;

DROP TABLE client_analytics;
ALTER TABLE client_analytics_rowid RENAME TO client_analytics;
