-- A SKU's listings as the availability computation reads them (channel,
-- rank; never the external ids) from an index that does not copy `external`.
-- `listings_by_sku_covering` carried each listing's external ids (JSON) a
-- second time, and every listing import paid for writing them into it; the
-- few reads that want external ids (a push, one SKU's page) look them up
-- in the table by primary key.
CREATE INDEX listings_by_sku_keys ON listings (sku, channel, rank);
DROP INDEX listings_by_sku_covering;
