-- Keep the roll-up markers honest inside the very transaction that marks a bucket dirty.
-- A minute flushed after its hour was rolled up inserts rollup_dirty('hour', H) and ('day', D);
-- these triggers lower analytics_state's 'rolled_up_until_hour' to H and 'rolled_up_until_day'
-- to D when the markers had passed them, so a reader never takes the now stale hour or day row
-- as complete. The next roll-up recomputes the bucket and raises the markers again.
-- ON CONFLICT DO NOTHING inserts (bucket already dirty) fire no trigger, and need none.

CREATE TRIGGER rollup_dirty_lowers_hour_marker
AFTER INSERT ON rollup_dirty
WHEN NEW.tier = 'hour'
BEGIN
    UPDATE analytics_state
       SET value = CAST(NEW.timestamp - NEW.timestamp % 3600 AS TEXT)
     WHERE key = 'rolled_up_until_hour'
       AND CAST(value AS INTEGER) > NEW.timestamp - NEW.timestamp % 3600;
END;

CREATE TRIGGER rollup_dirty_lowers_day_marker
AFTER INSERT ON rollup_dirty
BEGIN
    UPDATE analytics_state
       SET value = CAST(NEW.timestamp - NEW.timestamp % 86400 AS TEXT)
     WHERE key = 'rolled_up_until_day'
       AND CAST(value AS INTEGER) > NEW.timestamp - NEW.timestamp % 86400;
END;
