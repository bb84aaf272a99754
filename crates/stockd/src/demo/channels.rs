//! The five simulated channels of the demo (and of the end-to-end tests):
//! each channel's simulator on a loopback port and the real connector
//! pointed at it. The simulators keep the channels' published rate limits;
//! only their processing delays are short.
//!
//! Google signs in with a service-account key; the key pair beside this file
//! is a throwaway made for the demo and the tests, never a real account's.

use crate::outbound::dispatch::Connection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use stockd_channels::{amazon, bol, gmc, shopify, woocommerce, ReqwestTransport, Transport};
use stockd_core::ChannelId;
use stockd_sim::RunningSim;

/// A key pair made for the demo and the simulation only (never a real account's).
const DEMO_KEY_PEM: &str = include_str!("gmc-demo-key.pem");
const DEMO_PUBLIC_KEY_PEM: &str = include_str!("gmc-demo-key.pub.pem");

const SHOPIFY_TOKEN: &str = "shpat_demo_token";
const SHOPIFY_SECRET: &str = "demo-shopify-app-secret";
const WOO_KEY: &str = "ck_demo_0123456789abcdef0123456789abcdef";
const WOO_SECRET: &str = "cs_demo_0123456789abcdef0123456789abcdef";
const WOO_WEBHOOK_SECRET: &str = "demo-woo-webhook-secret";
const BOL_CLIENT: &str = "demo-bol-client";
/// How often the demo polls bol for orders (the orders list allows 25 calls
/// a minute); the drain waits this long for orders still unseen.
pub const BOL_ORDER_POLL: Duration = Duration::from_secs(3);
const BOL_SECRET: &str = "demo-bol-secret";
const LWA_CLIENT: &str = "amzn1.application-oa2-client.demo";
const LWA_SECRET: &str = "amzn1.oa2-cs.v1.demo";
const LWA_REFRESH: &str = "Atzr|demo-refresh-token";
const AMAZON_SELLER: &str = "A2DEMOSELLER01";
const AMAZON_NOTIFY_SECRET: &str = "demo-amazon-notification-secret";
const GMC_ACCOUNT: u64 = 123_456_789;
const GMC_DATA_SOURCE: u64 = 10_001;
const GMC_EMAIL: &str = "stockd-demo@stockd-demo.iam.gserviceaccount.com";

/// The Google Merchant Center simulator's account as the demo and the
/// simulated day set it up: it checks the connector's JWTs against the
/// demo key.
pub(crate) fn gmc_sim_config() -> stockd_sim::gmc::Config {
    stockd_sim::gmc::Config {
        account_id: GMC_ACCOUNT,
        data_source_id: GMC_DATA_SOURCE,
        service_account_email: GMC_EMAIL.into(),
        public_key: Some(DEMO_PUBLIC_KEY_PEM.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// The connector's configuration for a simulator of [`gmc_sim_config`]
/// answering the Merchant API and the token endpoint at `base_url`.
pub(crate) fn gmc_connector_config(base_url: &str) -> gmc::Config {
    gmc::Config {
        api_url: base_url.to_string(),
        token_url: format!("{base_url}/token"),
        account_id: GMC_ACCOUNT.to_string(),
        data_source: format!("accounts/{GMC_ACCOUNT}/dataSources/{GMC_DATA_SOURCE}"),
        service_account_email: GMC_EMAIL.into(),
        private_key_pem: DEMO_KEY_PEM.into(),
        // The simulator's per-method quota: 300 a minute.
        rate_limit: (10.0, 5.0),
        ..Default::default()
    }
}

/// Which simulators to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimKind {
    Shopify,
    Woocommerce,
    Bol,
    Amazon,
    Gmc,
}

impl SimKind {
    pub const ALL: [SimKind; 5] = [
        SimKind::Shopify,
        SimKind::Woocommerce,
        SimKind::Bol,
        SimKind::Amazon,
        SimKind::Gmc,
    ];

    /// The channel kind as stockd names it.
    pub fn kind(self) -> &'static str {
        match self {
            SimKind::Shopify => "shopify",
            SimKind::Woocommerce => "woocommerce",
            SimKind::Bol => "bol",
            SimKind::Amazon => "amazon",
            SimKind::Gmc => "gmc",
        }
    }

    /// The demo's channel id.
    pub fn channel(self) -> &'static str {
        match self {
            SimKind::Shopify => "shopify-main",
            SimKind::Woocommerce => "woo-main",
            SimKind::Bol => "bol-nl",
            SimKind::Amazon => "amazon-nl",
            SimKind::Gmc => "google-nl",
        }
    }

    /// Whether the channel shows quantities (Google shows availability).
    pub fn shows_quantity(self) -> bool {
        self != SimKind::Gmc
    }

    /// Whether customers can order there.
    pub fn takes_orders(self) -> bool {
        self != SimKind::Gmc
    }
}

/// A running simulator and the channel it plays.
pub struct SimChannel {
    pub kind: SimKind,
    pub sim: RunningSim,
}

impl SimChannel {
    pub fn channel(&self) -> &'static str {
        self.kind.channel()
    }
}

fn setup_error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Starts the simulators of `kinds` on loopback ports; order webhooks and
/// notifications go to the stockd API at `api_base` (`http://HOST:PORT`).
/// Returns the simulators and the connectors to hand to `stockd::spawn`.
pub async fn start(
    kinds: &[SimKind],
    api_base: &str,
) -> Result<(Vec<SimChannel>, Vec<Connection>), String> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let transport: Arc<dyn Transport> =
        Arc::new(ReqwestTransport::new(Duration::from_secs(10)).map_err(setup_error)?);
    let mut sims = Vec::new();
    let mut connections = Vec::new();
    for &kind in kinds {
        let hook = format!("{api_base}/v1/webhooks/{}/{}", kind.kind(), kind.channel());
        let (sim, connector): (RunningSim, Arc<dyn stockd_channels::Connector>) = match kind {
            SimKind::Shopify => {
                let sim = stockd_sim::shopify::start(
                    stockd_sim::shopify::Config {
                        access_token: SHOPIFY_TOKEN.into(),
                        webhook_secret: SHOPIFY_SECRET.into(),
                        webhook_url: Some(hook),
                        webhook_retry_delays: vec![Duration::from_millis(500); 8],
                        ..Default::default()
                    },
                    any,
                )
                .await
                .map_err(setup_error)?;
                let connector = shopify::Shopify::new(
                    shopify::Config {
                        shop_url: sim.base_url.clone(),
                        access_token: SHOPIFY_TOKEN.into(),
                        webhook_secret: SHOPIFY_SECRET.into(),
                        // The backstop for lost webhooks, as in production.
                        order_poll_interval: Some(Duration::from_secs(10)),
                        ..Default::default()
                    },
                    transport.clone(),
                );
                (sim, Arc::new(connector))
            }
            SimKind::Woocommerce => {
                let sim = stockd_sim::woocommerce::start(
                    stockd_sim::woocommerce::Config {
                        consumer_key: WOO_KEY.into(),
                        consumer_secret: WOO_SECRET.into(),
                        webhook_secret: WOO_WEBHOOK_SECRET.into(),
                        webhook_url: Some(hook),
                        ..Default::default()
                    },
                    any,
                )
                .await
                .map_err(setup_error)?;
                let connector = woocommerce::WooCommerce::new(
                    woocommerce::Config {
                        site_url: sim.base_url.clone(),
                        consumer_key: WOO_KEY.into(),
                        consumer_secret: WOO_SECRET.into(),
                        webhook_secret: WOO_WEBHOOK_SECRET.into(),
                        rate_limit: None,
                        // The backstop for lost webhooks, as in production.
                        order_poll_interval: Some(Duration::from_secs(10)),
                        ..Default::default()
                    },
                    transport.clone(),
                );
                (sim, Arc::new(connector))
            }
            SimKind::Bol => {
                let sim = stockd_sim::bol::start(
                    stockd_sim::bol::Config {
                        client_id: BOL_CLIENT.into(),
                        client_secret: BOL_SECRET.into(),
                        ..Default::default()
                    },
                    any,
                )
                .await
                .map_err(setup_error)?;
                let connector = bol::Bol::new(
                    bol::Config {
                        api_url: sim.base_url.clone(),
                        login_url: sim.base_url.clone(),
                        client_id: BOL_CLIENT.into(),
                        client_secret: BOL_SECRET.into(),
                        // The simulator settles a process in ~100 ms.
                        process_poll_interval: Duration::from_millis(150),
                        // The orders list allows 25 calls a minute.
                        order_poll_interval: BOL_ORDER_POLL,
                        ..Default::default()
                    },
                    transport.clone(),
                );
                (sim, Arc::new(connector))
            }
            SimKind::Amazon => {
                let sim = stockd_sim::amazon::start(
                    stockd_sim::amazon::Config {
                        client_id: LWA_CLIENT.into(),
                        client_secret: LWA_SECRET.into(),
                        refresh_token: LWA_REFRESH.into(),
                        seller_id: AMAZON_SELLER.into(),
                        notification_url: Some(hook),
                        notification_secret: AMAZON_NOTIFY_SECRET.into(),
                        ..Default::default()
                    },
                    any,
                )
                .await
                .map_err(setup_error)?;
                let connector = amazon::Amazon::new(
                    amazon::Config {
                        endpoint: sim.base_url.clone(),
                        lwa_url: format!("{}/auth/o2/token", sim.base_url),
                        client_id: LWA_CLIENT.into(),
                        client_secret: LWA_SECRET.into(),
                        refresh_token: LWA_REFRESH.into(),
                        seller_id: AMAZON_SELLER.into(),
                        notification_secret: AMAZON_NOTIFY_SECRET.into(),
                        // Beyond a few patches (5/s), a listings feed.
                        feed_threshold: 25,
                        feed_poll_interval: Duration::from_millis(250),
                        // The simulator generates a listings report in ~400 ms.
                        report_poll_interval: Duration::from_millis(250),
                        ..Default::default()
                    },
                    transport.clone(),
                );
                (sim, Arc::new(connector))
            }
            SimKind::Gmc => {
                let sim = stockd_sim::gmc::start(gmc_sim_config(), any)
                    .await
                    .map_err(setup_error)?;
                let connector =
                    gmc::Gmc::new(gmc_connector_config(&sim.base_url), transport.clone());
                (sim, Arc::new(connector))
            }
        };
        connections.push(Connection {
            channel: ChannelId::parse(kind.channel().to_string()).map_err(setup_error)?,
            connector,
        });
        sims.push(SimChannel { kind, sim });
    }
    Ok((sims, connections))
}
