-- Catalog scale: every per-SKU read is keyed. The writer reads the desired
-- states of the SKUs a group touched (`listing_state` is keyed by channel
-- first), and kit membership is looked up by component.
CREATE INDEX listing_state_by_sku ON listing_state (sku);
CREATE INDEX bundle_components_by_component ON bundle_components (component);
-- The outbox page of pending listings (lagging or dead-lettered) walks only
-- those, however many listings are in sync.
CREATE INDEX listing_state_pending ON listing_state (channel, sku)
    WHERE dirty_since_ms IS NOT NULL OR parked <> 0;
-- Moves with every change of what a desired-state computation reads besides
-- stock (channels, locations, kits, rules), so a writer keeps that setup
-- loaded between groups and reloads it only when it moved (also when
-- another instance sharing the database changed it).
CREATE TABLE setup_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO setup_generation (id, generation) VALUES (1, 0);
