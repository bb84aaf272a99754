-- Inbound bookkeeping: bus messages that can never apply (kept with why,
-- where from and their body until an operator discards them) and supplier
-- feed runs. Times are Unix milliseconds.
CREATE TABLE inbound_rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
