-- Channel order changes (or their lines) that map to no listing of the
-- channel: kept, not dropped, until a listing makes them map and they are
-- replayed. `item_keys` holds the channel's ids of each line (JSON), `change_json`
-- the whole normalised change (JSON). Times are Unix milliseconds.
CREATE TABLE unmapped_channel_lines (
    id BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    item_keys TEXT NOT NULL,
    change_json TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    UNIQUE (channel, dedup_key)
);
