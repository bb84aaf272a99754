-- The stock ledger: catalog, stock rows, reservations, inbound, the audit
-- trail, idempotency records and the quarantine.
CREATE TABLE locations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sellable INTEGER NOT NULL,
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
    on_hand INTEGER NOT NULL,
    reserved INTEGER NOT NULL,
    pending_return INTEGER NOT NULL,
    written_off INTEGER NOT NULL,
    PRIMARY KEY (sku, location)
) WITHOUT ROWID;
-- channel is '' for orders entered without a channel.
CREATE TABLE reservations (
    channel TEXT NOT NULL,
    order_id TEXT NOT NULL,
    line_id TEXT NOT NULL,
    alloc_index INTEGER NOT NULL,
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    ordered_qty INTEGER NOT NULL,
    shipped_qty INTEGER NOT NULL,
    cancelled_qty INTEGER NOT NULL,
    PRIMARY KEY (channel, order_id, line_id, alloc_index)
) WITHOUT ROWID;
CREATE TABLE inbound (
    po_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    qty INTEGER NOT NULL,
    eta TEXT,
    confirmed INTEGER NOT NULL,
    PRIMARY KEY (po_id, sku, location)
) WITHOUT ROWID;
CREATE INDEX inbound_by_sku ON inbound (sku);
CREATE TABLE idempotency (
    key TEXT PRIMARY KEY,
    payload_hash BLOB NOT NULL,
    result TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    occurred_at TEXT,
    received_at TEXT NOT NULL,
    source TEXT,
    event TEXT NOT NULL,
    changes TEXT NOT NULL,
    notes TEXT NOT NULL
);
CREATE TABLE ledger_skus (
    sku TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (sku, seq)
) WITHOUT ROWID;
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    wait_key TEXT NOT NULL,
    payload_hash BLOB NOT NULL,
    event TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX quarantine_waiting ON quarantine (status, wait_key, id);
CREATE TABLE oversells (
    seq INTEGER NOT NULL,
    channel TEXT NOT NULL,
    order_id TEXT NOT NULL,
    line_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    shortfall_qty INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (seq, line_id)
) WITHOUT ROWID;
