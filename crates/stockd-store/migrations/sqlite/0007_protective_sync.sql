-- Protective sync. `protective`: the update lowers what the channel shows
-- (a smaller quantity than the channel's count, or availability moving away
-- from in stock; with nothing known, a zero); derived from the row, so it
-- follows every change of desired, pushed or the channel's count.
-- `parked_gen`: the generation a dead letter parked (a newer desired state
-- is sent). `unacked_since_ms`: receipt of the oldest cause the channel has
-- not acknowledged yet (where update latency is measured from).
-- `in_flight_holder`: the instance whose push of the row is under way (its
-- `next_attempt_ms` keeps other rounds off it until the push resolves).
ALTER TABLE listing_state ADD COLUMN parked_gen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE listing_state ADD COLUMN in_flight_holder TEXT;
ALTER TABLE listing_state ADD COLUMN unacked_since_ms BIGINT;
ALTER TABLE listing_state ADD COLUMN protective BIGINT GENERATED ALWAYS AS (
    CASE WHEN json_extract(desired, '$.quantity')
              < COALESCE(channel_quantity, json_extract(pushed, '$.quantity'), 1)
           OR (json_extract(desired, '$.availability') <> 'in_stock'
               AND COALESCE(json_extract(pushed, '$.availability'), 'in_stock') = 'in_stock')
         THEN 1 ELSE 0 END
) VIRTUAL;
UPDATE listing_state SET parked_gen = desired_gen WHERE parked <> 0;
UPDATE listing_state SET unacked_since_ms = caused_at_ms WHERE dirty_since_ms IS NOT NULL;
-- The dispatcher's due query: protective first, then oldest.
CREATE INDEX listing_state_due ON listing_state (channel, protective DESC, dirty_since_ms, sku)
    WHERE dirty_since_ms IS NOT NULL;
-- Per-channel leases: one dispatcher per channel across instances, and the
-- order-poll cursor it keeps.
CREATE TABLE channel_leases (
    channel TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    poll_cursor TEXT
);
