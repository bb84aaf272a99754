//! `stockd-sim`: run a channel simulator on its own.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "stockd-sim",
    about = "Local simulators of the Shopify and WooCommerce APIs, with simulated customers and faults."
)]
struct Cli {
    #[command(subcommand)]
    channel: Channel,
}

#[derive(Subcommand)]
enum Channel {
    /// Shopify Admin GraphQL API (POST /admin/api/{version}/graphql.json).
    Shopify {
        #[arg(long, default_value = "127.0.0.1:7001")]
        listen: SocketAddr,
        /// Where webhooks (orders/create, orders/cancelled, refunds/create) are POSTed.
        #[arg(long)]
        webhook_url: Option<String>,
        /// App client secret used to sign webhooks.
        #[arg(long, default_value = "shpss_sim_secret")]
        webhook_secret: String,
        /// Value expected in X-Shopify-Access-Token.
        #[arg(long, default_value = "shpat_sim_token")]
        access_token: String,
        /// Leaky bucket size in cost points.
        #[arg(long, default_value_t = 1000.0)]
        bucket_size: f64,
        /// Cost points restored per second.
        #[arg(long, default_value_t = 50.0)]
        restore_rate: f64,
        /// HTTP status of THROTTLED responses (200 or 429).
        #[arg(long, default_value_t = 200)]
        throttle_status: u16,
        /// Create N listings SKU-0001.. with 10 units each.
        #[arg(long, default_value_t = 0)]
        seed: usize,
    },
    /// WooCommerce REST API v3 (/wp-json/wc/v3/).
    Woocommerce {
        #[arg(long, default_value = "127.0.0.1:7002")]
        listen: SocketAddr,
        /// Where order.created / order.updated webhooks are POSTed.
        #[arg(long)]
        webhook_url: Option<String>,
        #[arg(long, default_value = "wc_sim_secret")]
        webhook_secret: String,
        #[arg(long, default_value = "ck_sim_0123456789abcdef")]
        consumer_key: String,
        #[arg(long, default_value = "cs_sim_0123456789abcdef")]
        consumer_secret: String,
        /// Behave as if behind TLS: accept Basic auth and query-string keys.
        #[arg(long)]
        https_terminated: bool,
        /// Host rate limit as BURST,PER_SEC (default: none).
        #[arg(long, value_parser = parse_rate)]
        rate_limit: Option<(f64, f64)>,
        /// Create N listings SKU-0001.. with 10 units each.
        #[arg(long, default_value_t = 0)]
        seed: usize,
    },
}

fn parse_rate(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s.split_once(',').ok_or("expected BURST,PER_SEC")?;
    let a: f64 = a.trim().parse().map_err(|e| format!("{e}"))?;
    let b: f64 = b.trim().parse().map_err(|e| format!("{e}"))?;
    Ok((a, b))
}

fn seed_items(n: usize) -> Vec<(String, i64)> {
    (1..=n).map(|i| (format!("SKU-{i:04}"), 10)).collect()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let (sim, seed) = match cli.channel {
        Channel::Shopify {
            listen,
            webhook_url,
            webhook_secret,
            access_token,
            bucket_size,
            restore_rate,
            throttle_status,
            seed,
        } => {
            let cfg = stockd_sim::shopify::Config {
                webhook_url,
                webhook_secret,
                access_token,
                bucket_size,
                restore_rate,
                throttle_status,
                ..Default::default()
            };
            (stockd_sim::shopify::start(cfg, listen).await?, seed)
        }
        Channel::Woocommerce {
            listen,
            webhook_url,
            webhook_secret,
            consumer_key,
            consumer_secret,
            https_terminated,
            rate_limit,
            seed,
        } => {
            let cfg = stockd_sim::woocommerce::Config {
                webhook_url,
                webhook_secret,
                consumer_key,
                consumer_secret,
                https_terminated,
                rate_limit,
                ..Default::default()
            };
            (stockd_sim::woocommerce::start(cfg, listen).await?, seed)
        }
    };
    if seed > 0 {
        sim.add_listings(&seed_items(seed));
    }
    println!(
        "stockd-sim listening on {} ({} listings)",
        sim.base_url,
        sim.listings().len()
    );
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    Ok(())
}
