-- The stock ledger: catalog, stock rows, reservations, inbound, the audit
-- trail, idempotency records and the quarantine. JSON documents are kept as
-- TEXT: they are written once and read whole, so parsing them into JSONB on
-- the hot write path would buy nothing.
CREATE TABLE locations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sellable BOOLEAN NOT NULL,
    priority INTEGER NOT NULL
);
CREATE TABLE variants (
    sku TEXT PRIMARY KEY,
    title TEXT,
    product_id TEXT,
    gtin TEXT
);
CREATE TABLE stock (
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    on_hand BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    pending_return BIGINT NOT NULL,
    written_off BIGINT NOT NULL,
    PRIMARY KEY (sku, location)
);
-- channel is '' for orders entered without a channel.
CREATE TABLE reservations (
    channel TEXT NOT NULL,
    order_id TEXT NOT NULL,
    line_id TEXT NOT NULL,
    alloc_index INTEGER NOT NULL,
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    ordered_qty BIGINT NOT NULL,
    shipped_qty BIGINT NOT NULL,
    cancelled_qty BIGINT NOT NULL,
    PRIMARY KEY (channel, order_id, line_id, alloc_index)
);
CREATE TABLE inbound (
    po_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    qty BIGINT NOT NULL,
    eta DATE,
    confirmed BOOLEAN NOT NULL,
    PRIMARY KEY (po_id, sku, location)
);
CREATE INDEX inbound_by_sku ON inbound (sku);
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    payload_hash BYTEA NOT NULL,
    result TEXT NOT NULL
);
CREATE TABLE ledger (
    seq BIGINT PRIMARY KEY,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    occurred_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL,
    source TEXT,
    event TEXT NOT NULL,
    changes TEXT NOT NULL,
    notes TEXT NOT NULL
);
CREATE TABLE ledger_skus (
    sku TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (sku, seq)
);
CREATE TABLE quarantine (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    wait_key TEXT NOT NULL,
    payload_hash BYTEA NOT NULL,
    event TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX quarantine_waiting ON quarantine (status, wait_key, id);
CREATE TABLE oversells (
    seq BIGINT NOT NULL,
    channel TEXT NOT NULL,
    order_id TEXT NOT NULL,
    line_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    shortfall_qty BIGINT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (seq, line_id)
);
