-- Console search without scans: an exact GTIN lookup, titles by trigram
-- (FTS5 over the variants' titles, kept by triggers; case-insensitive
-- substrings of three characters or more), title prefixes for shorter
-- text, and a SKU's open returns.
CREATE INDEX variants_by_gtin ON variants (gtin, sku);
CREATE INDEX variants_by_title ON variants (lower(title));
CREATE VIRTUAL TABLE variants_title USING fts5(
    title, content = 'variants', content_rowid = 'rowid', tokenize = 'trigram'
);
CREATE TRIGGER variants_title_insert AFTER INSERT ON variants BEGIN
    INSERT INTO variants_title (rowid, title) VALUES (new.rowid, new.title);
END;
CREATE TRIGGER variants_title_delete AFTER DELETE ON variants BEGIN
    INSERT INTO variants_title (variants_title, rowid, title) VALUES ('delete', old.rowid, old.title);
END;
CREATE TRIGGER variants_title_update AFTER UPDATE OF title ON variants BEGIN
    INSERT INTO variants_title (variants_title, rowid, title) VALUES ('delete', old.rowid, old.title);
    INSERT INTO variants_title (rowid, title) VALUES (new.rowid, new.title);
END;
INSERT INTO variants_title (variants_title) VALUES ('rebuild');
CREATE INDEX returns_open_by_sku ON returns (sku, rma_id)
    WHERE received_qty > sellable_qty + unsellable_qty;
