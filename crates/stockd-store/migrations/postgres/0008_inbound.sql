-- Inbound bookkeeping: bus messages that can never apply (kept with why,
-- where from and their body until an operator discards them) and supplier
-- feed runs. Times are Unix milliseconds.
CREATE TABLE inbound_rejected (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    stream_seq BIGINT NOT NULL,
    subject TEXT NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    UNIQUE (source, stream, stream_seq)
);
CREATE TABLE feed_runs (
    id BIGSERIAL PRIMARY KEY,
    feed TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT NOT NULL,
    rows_total BIGINT NOT NULL,
    rows_applied BIGINT NOT NULL,
    rows_duplicate BIGINT NOT NULL,
    rows_bad BIGINT NOT NULL,
    skus BIGINT NOT NULL,
    error TEXT,
    problems TEXT NOT NULL
);
CREATE INDEX feed_runs_feed ON feed_runs (feed, id);
-- Stock changes published out (the publish outbox): one row per SKU whose
-- stock a committed group touched, written in that group's transaction;
-- `gen` counts those groups, `published_gen` is the last one published.
CREATE TABLE stock_publish (
    sku TEXT PRIMARY KEY,
    gen BIGINT NOT NULL,
    published_gen BIGINT NOT NULL DEFAULT 0,
    caused_seq BIGINT NOT NULL,
    changed_at_ms BIGINT NOT NULL
);
CREATE INDEX stock_publish_due ON stock_publish (changed_at_ms) WHERE gen > published_gen;
