-- Covering indexes for the query layer's counter reads on the roll-up tiers (issue 5).
-- Hour and day rows carry large merged histograms inline, so a range scan of the primary key
-- for SUM(request_count, ...) walks megabytes of blob pages; these indexes hold only the key
-- and the counters, so count routes read a fraction of the pages (measured on the
-- benchmarks/queries.py store: 30 d of day rows 32 -> 10 ms; a count(*) 19 -> 0.2 ms).
-- Percentile reads still use the primary key (they need the histogram). Roll-ups write a few
-- hundred rows per hour, so the extra index maintenance is negligible; minute rows (written
-- every second by the flush) get no such index.
CREATE INDEX metrics_aggregates_hour_counters ON metrics_aggregates_hour (
    timestamp, series_id, request_count, error_count, latency_count, latency_sum, bytes_sent, bytes_received,
    fault_count, injected_latency_sum, session_count, session_duration_sum, latency_min, latency_max
);
CREATE INDEX metrics_aggregates_day_counters ON metrics_aggregates_day (
    timestamp, series_id, request_count, error_count, latency_count, latency_sum, bytes_sent, bytes_received,
    fault_count, injected_latency_sum, session_count, session_duration_sum, latency_min, latency_max
);
