//! The hot statements: every statement run per SKU, per group or per page
//! on a path whose cost must not grow with the catalog (the event writer,
//! the outbox refresh, the dispatcher, the API's reads). Each must be served
//! by an index on both stores; `hot_statements` lists them all, and the
//! store tests ask each database for their plans and fail on a full scan of
//! a large table. A new per-SKU statement belongs here.

use crate::outbox as ob;
use crate::sqlite::batch as b;

/// One variant.
pub(crate) const SQLITE_VARIANT: &str =
    "SELECT title, product_id, gtin FROM variants WHERE sku = ?1";

/// Order lines of one SKU since a time (velocity pre-allocation).
pub(crate) const SQLITE_SALES_SINCE: &str =
    "SELECT l.event, l.received_at FROM ledger_skus s JOIN ledger l ON l.seq = s.seq WHERE s.sku = ?1 AND l.type = 'order' AND l.received_at >= ?2 ORDER BY l.seq";

/// Stock rows of one SKU.
pub(crate) const SQLITE_STOCK_OF: &str =
    "SELECT location, on_hand, reserved, pending_return, written_off FROM stock WHERE sku = ?1";

/// A page of one channel's listings.
pub(crate) const LISTINGS_PAGE: &str =
    "SELECT channel, sku, external, rank FROM listings WHERE channel = ?1 AND sku > ?2 ORDER BY sku LIMIT ?3";

/// A page of listed SKUs (whole-catalog passes).
pub(crate) const LISTED_AFTER: &str =
    "SELECT DISTINCT sku FROM listings WHERE sku > ?1 ORDER BY sku LIMIT ?2";

/// A page of variants (the stock page).
pub(crate) const VARIANTS_PAGE: &str =
    "SELECT sku FROM variants WHERE sku > ?1 ORDER BY sku LIMIT ?2";

/// Listings of some SKUs.
pub(crate) const PG_LISTINGS_OF: &str =
    "SELECT channel, sku, external, rank FROM listings WHERE sku = ANY($1) ORDER BY sku, channel";

/// The listings of some SKUs, without external ids (availability).
pub(crate) const PG_LISTING_KEYS_OF: &str =
    "SELECT channel, sku, rank FROM listings WHERE sku = ANY($1) ORDER BY sku, channel";

/// The desired states of one SKU on every channel (a published stock
/// change), by primary key (SQLite keys listing states by SKU, then
/// channel).
pub(crate) const SQLITE_STATES_OF_SKU: &str = "SELECT channel, desired FROM listing_state \
     WHERE channel IN (SELECT id FROM channels) AND sku = ?1 ORDER BY channel";

/// The desired states of some SKUs on every channel (published stock changes).
pub(crate) const PG_STATES_OF_SKUS: &str =
    "SELECT sku, channel, desired FROM listing_state WHERE sku = ANY($1) ORDER BY sku, channel";

/// Some variants.
pub(crate) const PG_VARIANTS: &str =
    "SELECT sku, title, product_id, gtin FROM variants WHERE sku = ANY($1)";

/// Stock rows of some SKUs (also the writer's load).
pub(crate) const PG_STOCK_OF: &str =
    "SELECT sku, location, on_hand, reserved, pending_return, written_off FROM stock WHERE sku = ANY($1)";

/// Inbound lines of some SKUs.
pub(crate) const PG_INBOUND_OF: &str =
    "SELECT po_id, sku, location, qty, eta, confirmed FROM inbound WHERE sku = ANY($1)";

/// Order lines of some SKUs since a time.
pub(crate) const PG_SALES_SINCE: &str =
    "SELECT s.sku, l.event, l.received_at FROM ledger_skus s JOIN ledger l ON l.seq = s.seq WHERE s.sku = ANY($1) AND l.type = 'order' AND l.received_at >= $2 ORDER BY l.seq";

/// Stock rows with their locations (stock pages).
pub(crate) const PG_STOCK_VIEWS: &str =
    "SELECT l.id, l.name, l.sellable, l.priority, s.on_hand, s.reserved, s.pending_return, s.written_off, s.sku FROM stock s JOIN locations l ON l.id = s.location WHERE s.sku = ANY($1)";

/// One variant.
pub(crate) const PG_VARIANT: &str = "SELECT title, product_id, gtin FROM variants WHERE sku = $1";

/// The writer's load: idempotency records.
pub(crate) const PG_IDEMPOTENCY: &str =
    "SELECT key, payload_hash, result FROM idempotency WHERE key = ANY($1)";

/// The writer's load: which SKUs are known variants.
pub(crate) const PG_LOAD_VARIANTS: &str = "SELECT sku FROM variants WHERE sku = ANY($1)";

/// The writer's load: stock rows.
pub(crate) const PG_LOAD_STOCK: &str =
    "SELECT sku, location, on_hand, reserved, pending_return, written_off FROM stock WHERE sku = ANY($1)";

/// Stored desired states of the SKUs a group touched.
pub(crate) const PG_STORED_DESIRED: &str =
    "SELECT channel, sku, desired, rules_version, dirty_since_ms IS NOT NULL FROM listing_state \
     WHERE sku = ANY($1)";

/// The setup generation (one row).
pub(crate) const SETUP_GENERATION: &str = "SELECT generation FROM setup_generation";
/// After a change of channels, locations, kits or rules.
pub(crate) const BUMP_SETUP: &str =
    "UPDATE setup_generation SET generation = generation + 1 WHERE id = 1";

/// Whether a variant is known.
pub(crate) const SQLITE_VARIANT_EXISTS: &str = "SELECT 1 FROM variants WHERE sku = ?1";

/// Tables that grow with the catalog or the ledger: a full scan of one on a
/// hot path makes every event, page or start slower as the business grows.
pub const LARGE_TABLES: &[&str] = &[
    "variants",
    "stock",
    "reservations",
    "inbound",
    "idempotency",
    "ledger",
    "ledger_skus",
    "quarantine",
    "oversells",
    "listings",
    "bundle_components",
    "listing_state",
    "dead_letters",
    "returns",
    "push_audit",
];

/// One hot statement in each dialect.
#[derive(Debug, Clone)]
pub struct HotStatement {
    pub name: &'static str,
    pub sqlite: String,
    pub postgres: String,
}

fn both(name: &'static str, sql: &str) -> HotStatement {
    HotStatement {
        name,
        sqlite: sql.to_string(),
        postgres: ob::pg(sql),
    }
}

fn each(name: &'static str, sqlite: &str, postgres: &str) -> HotStatement {
    HotStatement {
        name,
        sqlite: sqlite.to_string(),
        postgres: postgres.to_string(),
    }
}

/// Every hot statement, as the stores run them.
pub fn hot_statements() -> Vec<HotStatement> {
    vec![
        each(
            "stored desired states",
            b::stored_desired_in(),
            PG_STORED_DESIRED,
        ),
        each(
            "write desired states",
            ob::INSERT_DESIRED,
            &ob::pg(ob::PG_INSERT_DESIRED_MANY),
        ),
        each(
            "write desired states of lagging rows",
            ob::UPDATE_LAGGING_DESIRED,
            &ob::pg(ob::PG_INSERT_DESIRED_MANY),
        ),
        each(
            "rules version only",
            ob::UPDATE_VERSION,
            &ob::pg(ob::PG_UPDATE_VERSION_MANY),
        ),
        each("listings of skus", b::listings_in(), PG_LISTINGS_OF),
        each(
            "desired states of a published sku",
            SQLITE_STATES_OF_SKU,
            PG_STATES_OF_SKUS,
        ),
        each(
            "listing keys of skus",
            b::listing_keys_in(),
            PG_LISTING_KEYS_OF,
        ),
        each("variant", SQLITE_VARIANT, PG_VARIANT),
        each("variants of skus", b::variants_in(), PG_VARIANTS),
        each("known variants", b::variants_exist_in(), PG_LOAD_VARIANTS),
        each("variant exists", SQLITE_VARIANT_EXISTS, PG_LOAD_VARIANTS),
        each("stock of skus", b::stock_in(), PG_STOCK_OF),
        each("inbound of skus", b::inbound_in(), PG_INBOUND_OF),
        each("sales since", SQLITE_SALES_SINCE, PG_SALES_SINCE),
        each("stock views", SQLITE_STOCK_OF, PG_STOCK_VIEWS),
        each("writer: stock", b::variant_stock_in(), PG_LOAD_STOCK),
        each("writer: variants", b::variant_stock_in(), PG_LOAD_VARIANTS),
        each("writer: idempotency", b::idempotency_in(), PG_IDEMPOTENCY),
        both("listings page", LISTINGS_PAGE),
        both("listed skus page", LISTED_AFTER),
        both("variants page", VARIANTS_PAGE),
        both("setup generation", SETUP_GENERATION),
        both("outbox due: protective", &ob::due_sql(true)),
        both("outbox due: the rest", &ob::due_sql(false)),
        both("outbox accepted updates", &ob::accepted_sql()),
        both("outbox page", &ob::page_sql(false, false)),
        both("outbox page of a channel", &ob::page_sql(true, false)),
        both("outbox pending page", &ob::page_sql(false, true)),
        both(
            "outbox pending page of a channel",
            &ob::page_sql(true, true),
        ),
        both("outbox rows", &ob::rows_sql()),
        both("outbox ack", ob::ACK),
        both("outbox channel moved", ob::CHANNEL_MOVED),
        both("dead letters: revive transient", ob::REVIVE_TRANSIENT),
        both("dead letters: drop revived", ob::DROP_REVIVED),
        both("console: variants by gtin", crate::console::GTIN_SQL),
        each(
            "console: titles containing",
            crate::console::SQLITE_TITLE_TRIGRAM_SQL,
            crate::console::PG_TITLE_TRIGRAM_SQL,
        ),
        each(
            "console: titles starting with",
            crate::console::SQLITE_TITLE_PREFIX_SQL,
            crate::console::PG_TITLE_PREFIX_SQL,
        ),
        both(
            "console: pushes of a sku",
            &crate::console::recent_pushes_sql(),
        ),
        both(
            "console: open returns of a sku",
            crate::console::OPEN_RETURNS_OF_SQL,
        ),
    ]
}

/// The line of a query plan (`EXPLAIN QUERY PLAN` details on `sqlite`,
/// `EXPLAIN` text otherwise) that scans a large table whole, if any.
pub fn full_scan_in(plan_lines: &[String], dialect: &str) -> Option<String> {
    let large = |table: &str| LARGE_TABLES.contains(&table);
    match dialect {
        // SQLite: `SCAN t` (the whole table, or the whole of an index when
        // `USING … INDEX` follows); `SEARCH t USING …` is keyed.
        "sqlite" => plan_lines.iter().find_map(|line| {
            let rest = line.trim().strip_prefix("SCAN ")?;
            let table = rest.split_whitespace().next()?;
            large(table).then(|| line.clone())
        }),
        // PostgreSQL: a `Seq Scan`, or an index scan with no `Index Cond`
        // (the whole index walked).
        _ => {
            for (i, line) in plan_lines.iter().enumerate() {
                let node = line.trim().trim_start_matches("-> ").trim();
                if let Some(rest) = node.strip_prefix("Seq Scan on ") {
                    let table = rest.split_whitespace().next().unwrap_or_default();
                    if large(table) {
                        return Some(line.clone());
                    }
                }
                if node.contains("Index") && node.contains("Scan using ") {
                    let table = node
                        .split(" on ")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .unwrap_or_default();
                    let keyed = plan_lines[i + 1..]
                        .iter()
                        .take_while(|l| !l.contains("->"))
                        .any(|l| l.trim().starts_with("Index Cond:"));
                    if large(table) && !keyed {
                        return Some(line.clone());
                    }
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scans_are_recognised() {
        let lines = |text: &str| text.lines().map(str::to_string).collect::<Vec<_>>();
        assert!(full_scan_in(&lines("SCAN listing_state"), "sqlite").is_some());
        assert!(full_scan_in(&lines("SCAN listings USING COVERING INDEX x"), "sqlite").is_some());
        assert!(full_scan_in(&lines("SCAN locations"), "sqlite").is_none());
        assert!(full_scan_in(
            &lines("SEARCH listing_state USING INDEX listing_state_by_sku (sku=?)"),
            "sqlite"
        )
        .is_none());
        assert!(
            full_scan_in(&lines("Seq Scan on listing_state  (cost=0..1)"), "postgres").is_some()
        );
        assert!(full_scan_in(
            &lines("Limit\n  ->  Index Scan using listings_pkey on listings\n        Filter: (x)"),
            "postgres"
        )
        .is_some());
        assert!(full_scan_in(
            &lines("Index Scan using listings_pkey on listings\n  Index Cond: (sku = $1)"),
            "postgres"
        )
        .is_none());
    }

    fn refused(plans: Vec<(String, Vec<String>)>, dialect: &str) -> Vec<String> {
        plans
            .into_iter()
            .filter_map(|(name, plan)| {
                full_scan_in(&plan, dialect)
                    .map(|scan| format!("{name}: {scan}\n    {}", plan.join("\n    ")))
            })
            .collect()
    }

    #[tokio::test]
    async fn every_hot_statement_is_keyed_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.db");
        crate::migrate(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut plans = Vec::new();
        for statement in hot_statements() {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", statement.sqlite))
                .unwrap_or_else(|e| panic!("{}: {e}", statement.name));
            let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            plans.push((statement.name.to_string(), plan));
        }
        let refused = refused(plans, "sqlite");
        assert!(refused.is_empty(), "full scans:\n{}", refused.join("\n"));
    }

    /// A value of the parameter type PostgreSQL inferred.
    fn sample(ty: &tokio_postgres::types::Type) -> Box<dyn tokio_postgres::types::ToSql + Sync> {
        use tokio_postgres::types::Type;
        match *ty {
            Type::TEXT | Type::VARCHAR => Box::new("x".to_string()),
            Type::TEXT_ARRAY => Box::new(vec!["x".to_string()]),
            Type::INT8_ARRAY => Box::new(vec![1_i64]),
            Type::INT8 => Box::new(1_i64),
            Type::INT4 => Box::new(1_i32),
            Type::TIMESTAMPTZ => Box::new(chrono::Utc::now()),
            ref other => panic!("no sample value for parameter type {other}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_hot_statement_is_keyed_on_postgres() {
        let Some(url) =
            crate::test_support::fresh_postgres_url("every_hot_statement_is_keyed").await
        else {
            return;
        };
        crate::migrate(&url).await.unwrap();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        // The test tables are tiny, where a sequential scan is the cheapest
        // plan; with sequential scans priced out, one is chosen only when no
        // index can serve the statement.
        client
            .batch_execute("SET enable_seqscan = off")
            .await
            .unwrap();
        let mut plans = Vec::new();
        for statement in hot_statements() {
            let sql = format!("EXPLAIN {}", statement.postgres);
            let prepared = client
                .prepare(&sql)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", statement.name));
            let values: Vec<_> = prepared.params().iter().map(sample).collect();
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                values.iter().map(|v| v.as_ref()).collect();
            let plan: Vec<String> = client
                .query(&prepared, &refs)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", statement.name))
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect();
            plans.push((statement.name.to_string(), plan));
        }
        let refused = refused(plans, "postgres");
        assert!(refused.is_empty(), "full scans:\n{}", refused.join("\n"));
    }
}
