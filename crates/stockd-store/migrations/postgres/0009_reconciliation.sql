-- Reconciliation runs: what each channel showed compared with what stockd
-- wanted it to show. A run checks the channel's listings in SKU order and
-- commits its progress (cursor, counters, non-matching items) page by page,
-- so a crash resumes after the last committed page. Times are Unix ms.
CREATE TABLE reconciliation_runs (
    id BIGSERIAL PRIMARY KEY,
    channel TEXT NOT NULL,
    trigger TEXT NOT NULL,
    auto_fix BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    started_at_ms BIGINT,
    finished_at_ms BIGINT,
    total BIGINT NOT NULL DEFAULT 0,
    checked BIGINT NOT NULL DEFAULT 0,
    cursor_sku TEXT,
    in_sync BIGINT NOT NULL DEFAULT 0,
    differs BIGINT NOT NULL DEFAULT 0,
    missing BIGINT NOT NULL DEFAULT 0,
    unknown BIGINT NOT NULL DEFAULT 0,
    pending BIGINT NOT NULL DEFAULT 0,
    unreadable BIGINT NOT NULL DEFAULT 0,
    fixed BIGINT NOT NULL DEFAULT 0,
    channel_requests BIGINT NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX reconciliation_runs_channel ON reconciliation_runs (channel, id);
CREATE INDEX reconciliation_runs_open ON reconciliation_runs (status)
    WHERE status IN ('queued', 'running');
-- Listings of a run that were not in sync.
CREATE TABLE reconciliation_items (
    run_id BIGINT NOT NULL,
    sku TEXT NOT NULL,
    class TEXT NOT NULL,
    expected TEXT,
    observed TEXT,
    fixed BIGINT NOT NULL DEFAULT 0,
    note TEXT,
    PRIMARY KEY (run_id, sku)
);
CREATE INDEX reconciliation_items_class ON reconciliation_items (run_id, class, sku);
-- Every push attempt: what was sent, why, and what the channel answered.
-- Pruned by age (retention) in small batches.
CREATE TABLE push_audit (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    channel TEXT NOT NULL,
    sku TEXT NOT NULL,
    desired_gen BIGINT NOT NULL,
    rules_version BIGINT,
    caused_seq BIGINT,
    sent TEXT NOT NULL,
    outcome TEXT NOT NULL,
    channel_quantity BIGINT,
    code TEXT,
    message TEXT,
    latency_ms DOUBLE PRECISION
);
CREATE INDEX push_audit_sku ON push_audit (sku, id);
CREATE INDEX push_audit_at ON push_audit (at_ms);
-- Figures per channel per UTC day; writers add to them (several instances
-- may), so every figure is a sum.
CREATE TABLE kpi_daily (
    channel TEXT NOT NULL,
    day TEXT NOT NULL,
    order_lines BIGINT NOT NULL DEFAULT 0,
    stock_cancels BIGINT NOT NULL DEFAULT 0,
    pushes BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    dead_letters BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, day)
);
-- Update latency per channel per day as a histogram with fixed buckets.
CREATE TABLE kpi_latency (
    channel TEXT NOT NULL,
    day TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (channel, day, bucket)
);
CREATE INDEX oversells_kpi_received ON oversells (received_at);
-- How far the daily figures have followed the ledger (order lines).
CREATE TABLE kpi_cursor (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO kpi_cursor (name, seq) VALUES ('ledger', 0);
