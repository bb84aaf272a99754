-- Returns tracked per RMA: one row per RMA × SKU × location (its lines, in
-- the order first received) with what was received and what verified.
CREATE TABLE returns (
    rma_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    sku TEXT NOT NULL,
    location TEXT NOT NULL,
    received_qty BIGINT NOT NULL,
    sellable_qty BIGINT NOT NULL,
    unsellable_qty BIGINT NOT NULL,
    PRIMARY KEY (rma_id, position)
);
CREATE INDEX returns_open ON returns (rma_id)
    WHERE received_qty > sellable_qty + unsellable_qty;
-- Existing returns are rebuilt from the ledger. Before RMAs were tracked, a
-- verification drew on the pool of its SKU × location whatever RMA it named,
-- so: each RMA's own verifications count first (up to what it received), and
-- what was verified under another RMA's id settles the row's RMAs oldest
-- first. Per stock row the open units then add up to pending_return exactly.
INSERT INTO returns (rma_id, position, sku, location, received_qty, sellable_qty, unsellable_qty)
WITH events AS (
    SELECT seq, type,
           (event::jsonb ->> 'rma_id') AS rma_id,
           (event::jsonb ->> 'sku') AS sku,
           (event::jsonb ->> 'location') AS location,
           COALESCE((event::jsonb ->> 'qty')::bigint, 0) AS qty,
           COALESCE((event::jsonb ->> 'sellable_qty')::bigint, 0) AS good,
           COALESCE((event::jsonb ->> 'unsellable_qty')::bigint, 0) AS bad
    FROM ledger WHERE type IN ('return_received', 'return_verified')
),
per_rma AS (
    SELECT rma_id, sku, location,
           MIN(CASE WHEN type = 'return_received' THEN seq END) AS first_seq,
           SUM(CASE WHEN type = 'return_received' THEN qty ELSE 0 END)::bigint AS received,
           SUM(CASE WHEN type = 'return_verified' THEN good ELSE 0 END)::bigint AS good,
           SUM(CASE WHEN type = 'return_verified' THEN bad ELSE 0 END)::bigint AS bad
    FROM events GROUP BY rma_id, sku, location
),
per_row AS (
    SELECT sku, location, SUM(good)::bigint AS good, SUM(bad)::bigint AS bad FROM per_rma GROUP BY sku, location
),
own AS (
    SELECT rma_id, sku, location, first_seq, received,
           LEAST(good, received) AS own_good,
           LEAST(bad, received - LEAST(good, received)) AS own_bad
    FROM per_rma WHERE received > 0
),
leftover AS (
    SELECT r.sku, r.location,
           MAX(r.good) - COALESCE(SUM(o.own_good), 0)::bigint AS good,
           MAX(r.bad) - COALESCE(SUM(o.own_bad), 0)::bigint AS bad
    FROM per_row r LEFT JOIN own o ON o.sku = r.sku AND o.location = r.location
    GROUP BY r.sku, r.location
),
capacity AS (
    SELECT o.*, o.received - o.own_good - o.own_bad AS cap,
           COALESCE(SUM(o.received - o.own_good - o.own_bad) OVER (
               PARTITION BY o.sku, o.location ORDER BY o.first_seq, o.rma_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::bigint AS prior,
           l.good AS left_good, l.bad AS left_bad
    FROM own o JOIN leftover l ON l.sku = o.sku AND l.location = o.location
),
settled AS (
    SELECT rma_id, sku, location, first_seq, received, own_good, own_bad,
           GREATEST(0, LEAST(cap, left_good + left_bad - prior)) AS extra,
           GREATEST(0, LEAST(cap, left_good - prior)) AS extra_good_raw
    FROM capacity
)
SELECT rma_id,
       ROW_NUMBER() OVER (PARTITION BY rma_id ORDER BY first_seq, sku, location) - 1,
       sku, location, received,
       own_good + LEAST(extra, extra_good_raw),
       own_bad + extra - LEAST(extra, extra_good_raw)
FROM settled;
