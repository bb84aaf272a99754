-- A dead letter keeps whether its cause was transient (network, timeout,
-- 5xx): such a listing is sent again once the channel acknowledges pushes
-- again, instead of staying parked until someone retries it by hand.
ALTER TABLE dead_letters ADD COLUMN transient BIGINT NOT NULL DEFAULT 0;
CREATE INDEX dead_letters_listing ON dead_letters (channel, sku, transient);
