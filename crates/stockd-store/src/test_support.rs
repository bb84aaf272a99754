//! Support for tests that need a real PostgreSQL: each test gets a fresh,
//! uniquely named database on the server named by `STOCKD_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`). When the server is
//! unreachable the test is skipped loudly — unless `STOCKD_REQUIRE_SERVICES=1`,
//! when it fails.

use std::sync::atomic::{AtomicU32, Ordering};

/// The server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("STOCKD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Whether a missing service must fail the run instead of skipping.
pub fn services_required() -> bool {
    std::env::var("STOCKD_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A fresh empty database; `None` (after a loud message) when PostgreSQL is
/// unreachable and services are not required. Panics when they are.
pub async fn fresh_postgres_url(test_name: &str) -> Option<String> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let admin_url = postgres_admin_url();
    let client = match tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => {
            if services_required() {
                panic!(
                    "PostgreSQL at {admin_url} is unreachable and STOCKD_REQUIRE_SERVICES=1: {e}"
                );
            }
            eprintln!(
                "SKIPPED {test_name}: PostgreSQL at {admin_url} is unreachable ({e}); \
                 set STOCKD_TEST_POSTGRES_URL or start PostgreSQL"
            );
            return None;
        }
    };
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::Relaxed) {
        drop_databases_of_finished_runs(&client).await;
    }
    let name = format!(
        "stockd_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        test_name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(30)
            .collect::<String>()
            .to_lowercase()
    );
    // Separate statements: DROP/CREATE DATABASE refuse to run in a transaction block.
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .expect("drop stale test database");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let config: tokio_postgres::Config = admin_url.parse().expect("valid postgres url");
    let user = config.get_user().unwrap_or("postgres");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Some(format!("postgres://{user}@{host}:{port}/{name}"))
}

/// Test databases are named after the test process; those of processes that
/// have ended are dropped so runs do not pile up databases.
async fn drop_databases_of_finished_runs(client: &tokio_postgres::Client) {
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'stockd_test_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(2).unwrap_or_default();
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// The catalog several tests start from: `skus` as variants, each listed on
/// the Shopify channel `channel`, written 5,000 at a time as an import would.
pub async fn list_on_shopify(
    store: &dyn crate::Store,
    channel: &str,
    skus: &[stockd_core::Sku],
) -> Result<stockd_core::ChannelId, crate::StoreError> {
    let channel = stockd_core::ChannelId::parse(channel)
        .map_err(|e| crate::StoreError::Corrupt(format!("test channel id: {e}")))?;
    store
        .upsert_channel(crate::ChannelRecord {
            id: channel.clone(),
            kind: crate::ChannelKind::Shopify,
            locations: None,
            enabled: true,
        })
        .await?;
    for chunk in skus.chunks(5_000) {
        let variants = chunk.iter().map(|sku| stockd_core::Variant {
            sku: sku.clone(),
            title: Some(format!("{sku} title")),
            product_id: None,
            gtin: None,
        });
        store.upsert_variants(variants.collect()).await?;
        let listings = chunk.iter().map(|sku| {
            let mut external = serde_json::Map::new();
            external.insert("inventory_item_id".into(), format!("gid://{sku}").into());
            crate::ListingRecord {
                channel: channel.clone(),
                sku: sku.clone(),
                external,
                rank: None,
            }
        });
        store.upsert_listings(listings.collect()).await?;
    }
    Ok(channel)
}
