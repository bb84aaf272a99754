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
