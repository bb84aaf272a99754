-- Acknowledgements that come later (bol process statuses, Amazon feeds),
-- persisted so a restart follows them instead of sending again.
-- `in_flight_ref`: what the channel named the accepted update by (bol's
-- process status id, Amazon's feed id with the message id).
-- `in_flight_sent`: what was sent (JSON: generation, state, quantity sent,
-- the channel's count generation, the update's class).
-- `in_flight_at_ms`: when the channel accepted it.
ALTER TABLE listing_state ADD COLUMN in_flight_ref TEXT;
ALTER TABLE listing_state ADD COLUMN in_flight_sent TEXT;
ALTER TABLE listing_state ADD COLUMN in_flight_at_ms BIGINT;
-- The tracker's read: a channel's accepted updates, oldest first.
CREATE INDEX listing_state_tracked ON listing_state (channel, in_flight_at_ms)
    WHERE in_flight_ref IS NOT NULL;
