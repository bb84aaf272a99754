-- Console search without scans: an exact GTIN lookup, titles by trigram
-- (pg_trgm where the server has it; case-insensitive substrings of three
-- characters or more), title prefixes (byte order) for shorter text or
-- without pg_trgm, and a SKU's open returns.
CREATE INDEX variants_by_gtin ON variants (gtin, sku);
CREATE INDEX variants_by_title ON variants ((lower(title) COLLATE "C"));
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available: title search matches prefixes only';
END $$;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX variants_by_title_trgm ON variants USING gin (lower(title) gin_trgm_ops);
    END IF;
END $$;
CREATE INDEX returns_open_by_sku ON returns (sku, rma_id)
    WHERE received_qty > sellable_qty + unsellable_qty;
