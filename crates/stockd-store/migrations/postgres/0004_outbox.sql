-- The transactional outbox: one row per listing with what the channel
-- should show (written in the transaction of the event that changed it) and
-- what it was last acknowledged to show. Times are Unix milliseconds.
CREATE TABLE listing_state (
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
    PRIMARY KEY (channel, sku)
);
CREATE INDEX listing_state_dirty ON listing_state (channel, dirty_since_ms)
    WHERE dirty_since_ms IS NOT NULL;
CREATE TABLE dead_letters (
    id BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    sku TEXT NOT NULL,
    desired_gen BIGINT NOT NULL,
    desired TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    status BIGINT,
    body TEXT,
    attempts BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
