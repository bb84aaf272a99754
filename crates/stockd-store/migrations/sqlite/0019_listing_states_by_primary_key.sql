-- Every read of listing states names the channel (the primary key's first
-- column); the one that did not — a published stock change's states of one
-- SKU — now asks per enabled channel by primary key. `listing_state_by_sku`
-- served only it, and every listing import paid for one more B-tree entry
-- per new listing.
DROP INDEX listing_state_by_sku;
