-- An order line for a kit that is short on several components leaves one
-- oversell note per component: the key names the SKU as well.
ALTER TABLE oversells DROP CONSTRAINT oversells_pkey;
ALTER TABLE oversells ADD PRIMARY KEY (seq, line_id, sku);
