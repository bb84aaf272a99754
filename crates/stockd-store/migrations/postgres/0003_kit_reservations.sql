-- A kit order line reserves its components: such rows name the kit ordered
-- and the component units per kit (both NULL for plain rows).
ALTER TABLE reservations ADD COLUMN kit_sku TEXT;
ALTER TABLE reservations ADD COLUMN per_kit_qty BIGINT;
