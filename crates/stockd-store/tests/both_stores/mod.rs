//! The harness the store test binaries share: a fresh SQLite file or a fresh
//! PostgreSQL database per case (skipped loudly when PostgreSQL is
//! unreachable, unless STOCKD_REQUIRE_SERVICES=1), and `on_both_stores!`,
//! which runs each named case on both.

use std::sync::Arc;
use stockd_store::Store;

pub type Shared = Arc<dyn Store>;

pub async fn sqlite_store() -> (Shared, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stockd.db").display());
    (stockd_store::open(&url).await.unwrap(), dir)
}

pub async fn postgres_store(name: &str) -> Option<Shared> {
    let url = stockd_store::test_support::fresh_postgres_url(name).await?;
    Some(stockd_store::open(&url).await.unwrap())
}

/// `on_both_stores!(case, …)`: a `sqlite::case` and a `postgres::case` test
/// for each `async fn case(store: Shared)` of the including file.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = crate::both_stores::sqlite_store().await;
                    super::$case(store.clone()).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(store) =
                        crate::both_stores::postgres_store(stringify!($case)).await
                    else {
                        return;
                    };
                    super::$case(store.clone()).await;
                    store.close().await;
                }
            )*
        }
    };
}
