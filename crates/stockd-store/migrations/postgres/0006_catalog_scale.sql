-- Catalog scale: every per-SKU read is keyed. The writer reads the desired
-- states of the SKUs a group touched (`listing_state` is keyed by channel
-- first), and kit membership is looked up by component.
CREATE INDEX listing_state_by_sku ON listing_state (sku);
CREATE INDEX bundle_components_by_component ON bundle_components (component);
-- The outbox page of pending listings (lagging or dead-lettered) walks only
-- those, however many listings are in sync.
CREATE INDEX listing_state_pending ON listing_state (channel, sku)
    WHERE dirty_since_ms IS NOT NULL OR parked <> 0;
