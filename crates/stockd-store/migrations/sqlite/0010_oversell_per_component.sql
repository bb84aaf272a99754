-- An order line for a kit that is short on several components leaves one
-- oversell note per component: the key names the SKU as well.
CREATE TABLE oversells_by_sku (
    seq INTEGER NOT NULL,
    channel TEXT NOT NULL,
    order_id TEXT NOT NULL,
    line_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    shortfall_qty INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (seq, line_id, sku)
) WITHOUT ROWID;
INSERT INTO oversells_by_sku
    SELECT seq, channel, order_id, line_id, sku, location, shortfall_qty, received_at FROM oversells;
DROP TABLE oversells;
ALTER TABLE oversells_by_sku RENAME TO oversells;
CREATE INDEX oversells_kpi_received ON oversells (received_at);
