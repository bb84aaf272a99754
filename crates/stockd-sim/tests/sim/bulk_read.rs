//! The connectors' bulk reads (`read_all`) against the running simulators: Amazon's listings
//! report (Reports API 2021-06-30) and Google's `products.list`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stockd_channels::{
    Availability, ChannelLevel, Connector, ErrorClass, External, LevelQuery, ReqwestTransport,
    Transport,
};
use stockd_sim::{Faults, RunningSim, SimListing};

use crate::common_support::any_addr;

fn transport() -> Arc<dyn Transport> {
    Arc::new(ReqwestTransport::new(Duration::from_secs(10)).expect("http client"))
}

/// The back office edit a merchant makes behind stockd's back.
async fn edit(sim: &RunningSim, sku: &str, quantity: i64) {
    let response = reqwest::Client::new()
        .post(format!("{}/_sim/listings/{sku}/quantity", sim.base_url))
        .json(&json!({ "quantity": quantity }))
        .send()
        .await
        .expect("edit");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// `read_all` with a progress callback; returns the read and the highest progress seen.
async fn read_all(
    connector: &dyn Connector,
) -> (
    Result<stockd_channels::BulkRead, stockd_channels::ChannelError>,
    u64,
) {
    let seen = AtomicU64::new(0);
    let progress = |n: u64| {
        seen.fetch_max(n, Ordering::Relaxed);
    };
    let result = connector.read_all(&progress).await;
    (result, seen.load(Ordering::Relaxed))
}

fn by_key(read: &stockd_channels::BulkRead) -> BTreeMap<String, ChannelLevel> {
    let map: BTreeMap<String, ChannelLevel> = read
        .listings
        .iter()
        .map(|l| (l.key.clone(), l.level.clone()))
        .collect();
    assert_eq!(map.len(), read.listings.len(), "keys are unique");
    map
}

fn level(quantity: Option<i64>, availability: Option<Availability>) -> ChannelLevel {
    ChannelLevel {
        quantity,
        availability,
    }
}

mod amazon {
    use super::*;
    use stockd_channels::amazon::{Amazon, Config};
    use stockd_sim::amazon::{default_rate_limits, start, Config as SimConfig, RateLimit};

    async fn sim(config: SimConfig) -> RunningSim {
        start(config, any_addr()).await.expect("amazon simulator")
    }

    fn connector(sim: &RunningSim) -> Amazon {
        let s = SimConfig::default();
        Amazon::new(
            Config {
                endpoint: sim.base_url.clone(),
                lwa_url: format!("{}/auth/o2/token", sim.base_url),
                client_id: s.client_id,
                client_secret: s.client_secret,
                refresh_token: s.refresh_token,
                seller_id: s.seller_id,
                marketplace_id: s.marketplace_id,
                report_poll_interval: Duration::from_millis(100),
                report_timeout: Duration::from_secs(60),
                ..Default::default()
            },
            transport(),
        )
    }

    /// Lists `n` listings as stockd knows them (their stored externals).
    fn listings(sim: &RunningSim, n: usize) -> Vec<SimListing> {
        let items: Vec<(String, i64)> = (0..n)
            .map(|i| (format!("AMZ-{i:03}"), 10 + i as i64))
            .collect();
        sim.add_listings(&items)
    }

    /// Fetches the access token so that the request counts that follow are the read's own.
    async fn warm(connector: &Amazon, known: &[SimListing]) {
        let query = LevelQuery {
            sku: known[0].sku.clone(),
            external: known[0].external.clone(),
        };
        let levels = connector.read_levels(&[query]).await.expect("read_levels");
        assert!(levels[0].is_ok(), "{levels:?}");
    }

    #[tokio::test]
    async fn the_listings_report_shows_every_listing_its_edits_and_unknown_ones() {
        let sim = sim(SimConfig {
            report_gzip: true,
            ..Default::default()
        })
        .await;
        let known = listings(&sim, 40);
        edit(&sim, "AMZ-003", 0).await;
        edit(&sim, "AMZ-017", 99).await;
        edit(&sim, "AMZ-039", 1).await;
        // Listed by the merchant in Seller Central, never by stockd.
        sim.add_listings(&[("HANDMADE-1".to_string(), 4)]);
        let connector = connector(&sim);
        warm(&connector, &known).await;
        let before = sim.stats();

        let (read, progress) = read_all(&connector).await;
        let read = read.expect("read_all");

        let after = sim.stats();
        let shown = by_key(&read);
        assert_eq!(shown.len(), 41);
        assert_eq!(progress, 41);
        for (i, listing) in known.iter().enumerate() {
            let key = connector
                .listing_key(&listing.external)
                .expect("a stored listing has a key");
            assert_eq!(key, listing.sku);
            let want = match i {
                3 => 0,
                17 => 99,
                39 => 1,
                _ => 10 + i as i64,
            };
            let availability = if want > 0 {
                Availability::InStock
            } else {
                Availability::OutOfStock
            };
            assert_eq!(shown[&key], level(Some(want), Some(availability)), "{key}");
        }
        assert_eq!(
            shown["HANDMADE-1"],
            level(Some(4), Some(Availability::InStock))
        );
        let unknown = read
            .listings
            .iter()
            .find(|l| l.key == "HANDMADE-1")
            .expect("unknown listing");
        assert_eq!(unknown.channel_sku.as_deref(), Some("HANDMADE-1"));
        // createReport, getReport polls until DONE, getReportDocument, and the download
        // (from the document store, not the SP-API host).
        assert_eq!(read.channel_requests, after.requests - before.requests + 1);
        let polls = read.channel_requests - 3;
        assert!(
            (1..=20).contains(&polls),
            "{polls} getReport polls for a report that takes 400 ms at 100 ms intervals"
        );
        assert_eq!(after.rate_limit_violations, before.rate_limit_violations);
        assert!(read.started_at <= chrono::Utc::now());
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_throttled_report_poll_is_waited_out() {
        let mut limits = default_rate_limits();
        // One poll a second: the connector's second poll, 100 ms later, is throttled.
        limits.insert(
            "getReport".into(),
            RateLimit {
                rate: 1.0,
                burst: 1.0,
            },
        );
        let sim = sim(SimConfig {
            rate_limits: limits,
            report_delay: Duration::from_millis(600),
            ..Default::default()
        })
        .await;
        let known = listings(&sim, 5);
        edit(&sim, "AMZ-002", 7).await;
        let connector = connector(&sim);
        warm(&connector, &known).await;
        let before = sim.stats();

        let (read, _) = read_all(&connector).await;
        let read = read.expect("a throttle while polling is waited out");

        let after = sim.stats();
        assert!(
            after.rate_limit_violations > before.rate_limit_violations,
            "the simulator throttled a poll"
        );
        let shown = by_key(&read);
        assert_eq!(shown.len(), 5);
        assert_eq!(shown["AMZ-002"].quantity, Some(7));
        assert_eq!(shown["AMZ-004"].quantity, Some(14));
        // Throttled polls are requests too.
        assert_eq!(read.channel_requests, after.requests - before.requests + 1);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_fatal_report_is_a_clear_error_and_a_cancelled_one_shows_nothing() {
        let sim = sim(SimConfig::default()).await;
        listings(&sim, 3);
        let response = reqwest::Client::new()
            .post(format!("{}/_sim/amazon/report_outcomes", sim.base_url))
            .json(&json!({"outcomes": ["FATAL", "CANCELLED"]}))
            .send()
            .await
            .expect("outcomes");
        assert_eq!(response.status(), 200);
        let connector = connector(&sim);

        let (fatal, _) = read_all(&connector).await;
        let error = fatal.expect_err("a FATAL report is an error");
        assert_eq!(error.code, "report_fatal");
        assert_eq!(error.class, ErrorClass::Retryable);
        assert!(error.message.contains("FATAL"), "{}", error.message);
        assert!(
            error.message.contains("Injected fatal error"),
            "the report's error document is quoted: {}",
            error.message
        );

        // Amazon cancels a report with no data to return.
        let (cancelled, progress) = read_all(&connector).await;
        let cancelled = cancelled.expect("a cancelled report is an empty read");
        assert!(cancelled.listings.is_empty());
        assert_eq!(progress, 0);
        sim.shutdown().await;
    }
}

mod gmc {
    use super::*;
    use stockd_channels::gmc::{Config, Gmc};
    use stockd_sim::gmc::{start, Config as SimConfig};

    const ACCOUNT: u64 = 4242;
    const DATA_SOURCE: u64 = 77;

    async fn sim(config: SimConfig) -> RunningSim {
        start(
            SimConfig {
                account_id: ACCOUNT,
                data_source_id: DATA_SOURCE,
                processing_delay: Duration::ZERO,
                ..config
            },
            any_addr(),
        )
        .await
        .expect("gmc simulator")
    }

    fn connector(sim: &RunningSim) -> Gmc {
        Gmc::new(
            Config {
                api_url: sim.base_url.clone(),
                token_url: format!("{}/token", sim.base_url),
                account_id: ACCOUNT.to_string(),
                data_source: format!("accounts/{ACCOUNT}/dataSources/{DATA_SOURCE}"),
                service_account_email: SimConfig::default().service_account_email,
                private_key_pem: crate::gmc::KEY_A_PRIVATE.to_string(),
                rate_limit: (50.0, 50.0),
                ..Default::default()
            },
            transport(),
        )
    }

    async fn warm(connector: &Gmc, listing: &SimListing) {
        let query = LevelQuery {
            sku: listing.sku.clone(),
            external: listing.external.clone(),
        };
        let levels = connector.read_levels(&[query]).await.expect("read_levels");
        assert!(levels[0].is_ok(), "{levels:?}");
    }

    fn external_of(listing: &SimListing) -> &External {
        &listing.external
    }

    #[tokio::test]
    async fn products_list_pages_through_every_product_with_its_availability() {
        let sim = sim(SimConfig::default()).await;
        // Three pages of 1000.
        let items: Vec<(String, i64)> = (0..2100)
            .map(|i| (format!("G-{i:04}"), i64::from(i % 5 != 0)))
            .collect();
        let known = sim.add_listings(&items);
        edit(&sim, "G-0001", 0).await;
        edit(&sim, "G-0005", 3).await;
        sim.add_listings(&[("MERCHANT-ONLY".to_string(), 2)]);
        let connector = connector(&sim);
        warm(&connector, &known[1]).await;
        let before = sim.stats();

        let (read, progress) = read_all(&connector).await;
        let read = read.expect("read_all");

        let after = sim.stats();
        let shown = by_key(&read);
        assert_eq!(shown.len(), 2101);
        assert_eq!(progress, 2101);
        assert_eq!(read.channel_requests, 3, "three pages of 1000");
        assert_eq!(after.requests - before.requests, 3);
        for (i, listing) in known.iter().enumerate() {
            let key = connector
                .listing_key(external_of(listing))
                .expect("a stored listing has a key");
            let in_stock = match i {
                1 => false,
                5 => true,
                _ => i % 5 != 0,
            };
            let availability = if in_stock {
                Availability::InStock
            } else {
                Availability::OutOfStock
            };
            // Google keeps no count for these products.
            assert_eq!(shown[&key], level(None, Some(availability)), "{key}");
        }
        let unknown = read
            .listings
            .iter()
            .find(|l| l.channel_sku.as_deref() == Some("MERCHANT-ONLY"))
            .expect("the product stockd does not know");
        assert_eq!(unknown.key, "nl~NL~MERCHANT-ONLY");
        assert_eq!(unknown.level, level(None, Some(Availability::InStock)));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_quota_error_while_paging_is_waited_out() {
        let sim = sim(SimConfig::default()).await;
        let items: Vec<(String, i64)> = (0..1200).map(|i| (format!("Q-{i:04}"), 1)).collect();
        let known = sim.add_listings(&items);
        let connector = connector(&sim);
        warm(&connector, &known[0]).await;
        let before = sim.stats();
        sim.set_faults(Faults {
            throttle_storm_secs: 1.0,
            retry_after_secs: Some(1.5),
            ..Default::default()
        });

        let (read, _) = read_all(&connector).await;
        let read = read.expect("a per-minute quota error is waited out");

        let after = sim.stats();
        assert_eq!(read.listings.len(), 1200);
        assert!(after.injected_faults > before.injected_faults);
        // The throttled request and the two pages.
        assert_eq!(read.channel_requests, 3);
        assert_eq!(after.requests - before.requests, 3);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_daily_quota_error_ends_the_read() {
        let sim = sim(SimConfig {
            requests_per_day: 1,
            ..Default::default()
        })
        .await;
        let items: Vec<(String, i64)> = (0..1001).map(|i| (format!("D-{i:04}"), 1)).collect();
        sim.add_listings(&items);
        let connector = connector(&sim);

        let (read, _) = read_all(&connector).await;
        let error = read.expect_err("the second page is over the daily quota");
        assert_eq!(error.class, ErrorClass::RateLimited);
        assert_eq!(error.code, "quota/daily_limit_exceeded");
        sim.shutdown().await;
    }
}
