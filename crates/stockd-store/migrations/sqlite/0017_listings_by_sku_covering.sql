-- The listings of a SKU in one index read. Every desired-state computation
-- (the writer's refresh of each group, the start-up recompute, rules
-- previews) reads the listings of its SKUs; through `listings_by_sku` (sku
-- → channel) each listing then cost a second search of the table by
-- (channel, sku), one per channel the SKU is listed on. With `external`
-- and `rank` in the index the read never leaves it.
CREATE INDEX listings_by_sku_covering ON listings (sku, channel, external, rank);
DROP INDEX listings_by_sku;
