-- Listing states written by the page, not by the listing. An event moves
-- every listing of its SKU, and a group of events dirtied (and wrote to the
-- WAL at its commit) about four pages per listing on a large catalog: the
-- table's, keyed by channel first, and one in each index whose key or
-- condition names what a new desired state sets (`dirty_since_ms`, and
-- `protective`, which follows `desired`) -- SQLite rewrites such an entry
-- even when its value stays the same.
-- * Keyed by (sku, channel): a SKU's rows share a page. Reads by channel
--   take `listing_state_by_channel`, whose key never moves.
-- * The writer sets `dirty_since_ms` only on a clean row (outbox.rs).
-- * The due order (protective first) comes from `listing_state_protective`,
--   which holds only protective rows (a new state that is not protective,
--   before or after, leaves it alone), and `listing_state_dirty` for the
--   rest; `listing_state_due` (keyed by `protective`) is gone.
CREATE TABLE listing_state_by_sku (
    channel TEXT NOT NULL,
    sku TEXT NOT NULL,
    desired TEXT NOT NULL,
    rules_version BIGINT,
    desired_gen BIGINT NOT NULL,
    caused_seq BIGINT,
    caused_at_ms BIGINT NOT NULL,
    dirty_since_ms BIGINT,
    sent_gen BIGINT NOT NULL DEFAULT 0,
    pushed TEXT,
    pushed_at_ms BIGINT,
    channel_quantity BIGINT,
    channel_gen BIGINT NOT NULL DEFAULT 0,
    recent_pushes TEXT NOT NULL DEFAULT '[]',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT,
    last_error TEXT,
    parked BIGINT NOT NULL DEFAULT 0,
    parked_gen BIGINT NOT NULL DEFAULT 0,
    in_flight_holder TEXT,
    unacked_since_ms BIGINT,
    protective BIGINT GENERATED ALWAYS AS (
        CASE WHEN json_extract(desired, '$.quantity')
                  < COALESCE(channel_quantity, json_extract(pushed, '$.quantity'), 1)
               OR (json_extract(desired, '$.availability') <> 'in_stock'
                   AND COALESCE(json_extract(pushed, '$.availability'), 'in_stock') = 'in_stock')
             THEN 1 ELSE 0 END
    ) VIRTUAL,
    in_flight_ref TEXT,
    in_flight_sent TEXT,
    in_flight_at_ms BIGINT,
    PRIMARY KEY (sku, channel)
) WITHOUT ROWID;
INSERT INTO listing_state_by_sku (channel, sku, desired, rules_version, desired_gen, caused_seq,
        caused_at_ms, dirty_since_ms, sent_gen, pushed, pushed_at_ms, channel_quantity,
        channel_gen, recent_pushes, attempts, next_attempt_ms, last_error, parked, parked_gen,
        in_flight_holder, unacked_since_ms, in_flight_ref, in_flight_sent, in_flight_at_ms)
    SELECT channel, sku, desired, rules_version, desired_gen, caused_seq,
        caused_at_ms, dirty_since_ms, sent_gen, pushed, pushed_at_ms, channel_quantity,
        channel_gen, recent_pushes, attempts, next_attempt_ms, last_error, parked, parked_gen,
        in_flight_holder, unacked_since_ms, in_flight_ref, in_flight_sent, in_flight_at_ms
    FROM listing_state ORDER BY sku, channel;
DROP TABLE listing_state;
ALTER TABLE listing_state_by_sku RENAME TO listing_state;
CREATE INDEX listing_state_by_channel ON listing_state (channel, sku);
CREATE INDEX listing_state_dirty ON listing_state (channel, dirty_since_ms)
    WHERE dirty_since_ms IS NOT NULL;
CREATE INDEX listing_state_pending ON listing_state (channel, sku)
    WHERE dirty_since_ms IS NOT NULL OR parked <> 0;
CREATE INDEX listing_state_protective ON listing_state (channel, dirty_since_ms, sku)
    WHERE dirty_since_ms IS NOT NULL AND protective = 1;
CREATE INDEX listing_state_tracked ON listing_state (channel, in_flight_at_ms)
    WHERE in_flight_ref IS NOT NULL;
