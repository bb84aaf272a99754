//! WooCommerce REST API v3 simulator.
//!
//! Emulated: `/wp-json/wc/v3/` with WooCommerce's authentication: OAuth 1.0a one-legged
//! (HMAC-SHA1/HMAC-SHA256, ±15 min timestamp, nonce reuse) over plain HTTP, and — when
//! `https_terminated` — Basic auth and `consumer_key`/`consumer_secret` query parameters, with
//! the exact 401 codes, messages and `WWW-Authenticate`; key permissions; products (simple and
//! variable) and variations with the stock write rules of (`inventory_delta`, unmanaged
//! stock clears the quantity, derived parent status, automatic out-of-stock); list endpoints
//! with `X-WP-Total`, `X-WP-TotalPages` and `Link`; batch endpoints with the 100-item limit and
//! per-item errors; `orderby`/`order` and `_fields` on the collections (`collection`); orders whose stock is reduced at `processing`; `order.created`
//! / `order.updated` webhooks signed over the exact `wp_json_encode` bytes, without retries and
//! with auto-disable after repeated failures; order refunds with line quantities and restock
//! (`refunds.rs`); an optional host rate limit.
//!
//! Sources:
//! - REST API v3 reference: <https://woocommerce.github.io/woocommerce-rest-api-docs/>
//!   (authentication, products, product variations, orders, webhooks).
//! - WooCommerce's own code for what the reference leaves out:
//!   <https://github.com/woocommerce/woocommerce/blob/trunk/plugins/woocommerce/includes/class-wc-rest-authentication.php>,
//!   <https://github.com/woocommerce/woocommerce/blob/trunk/plugins/woocommerce/includes/rest-api/Controllers/Version3/class-wc-rest-products-controller.php>,
//!   <https://github.com/woocommerce/woocommerce/blob/trunk/plugins/woocommerce/includes/class-wc-webhook.php>.
//! - PHP's `$_GET`: <https://www.php.net/manual/en/reserved.variables.get.php>.

mod auth;
mod collection;
mod customers;
mod http;
mod json;
mod orders;
mod products;
mod refunds;
mod state;
mod stock;

use crate::SimClock;
use auth::*;
pub use auth::{oauth_base_string, oauth_signature};
use http::*;
use state::*;
use stock::*;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock: the system clock, or a simulation's paused clock.
use tokio::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::common::{
    ct_eq, hmac_sha1, hmac_sha256, hmac_sha256_base64, lock, parse_form_urlencoded, percent_decode,
    percent_encode, php_json_encode, retry_after_value, serve, serve_in_memory, sim_router,
    Counters, Delivery, InMemorySim, Injected, NewListing, Plus, RetryPolicy, RunningSim,
    SimBackend, SimCore, SimError, SimListing, SimOptions,
};

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub consumer_key: String,
    pub consumer_secret: String,
    /// `read`, `write` or `read_write`.
    pub key_permissions: String,
    pub webhook_secret: String,
    pub webhook_url: Option<String>,
    /// Subscribed topics: `order.created`, `order.updated`.
    pub webhook_topics: Vec<String>,
    pub webhook_id: u64,
    pub webhook_timeout: Duration,
    /// Behave as if TLS were terminated in front: Basic auth and query keys are accepted.
    pub https_terminated: bool,
    /// Host rate limit (burst, requests per second); WooCommerce itself has none.
    pub rate_limit: Option<(f64, f64)>,
    /// The site option `woocommerce_manage_stock` ( rule 1).
    pub manage_stock: bool,
    /// Site home URL used in `X-WC-Webhook-Source`; defaults to the listen address.
    pub home_url: Option<String>,
    /// The shop's clock for the dates it writes; `None`: the system clock.
    pub clock: Option<SimClock>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            consumer_key: "ck_sim_0123456789abcdef".into(),
            consumer_secret: "cs_sim_0123456789abcdef".into(),
            key_permissions: "read_write".into(),
            webhook_secret: "wc_sim_secret".into(),
            webhook_url: None,
            webhook_topics: vec!["order.created".into(), "order.updated".into()],
            webhook_id: 1,
            webhook_timeout: Duration::from_secs(60),
            https_terminated: false,
            rate_limit: None,
            manage_stock: true,
            home_url: None,
            clock: None,
        }
    }
}

/// Start the simulator on `listen` (port 0 picks a free port).
pub async fn start(config: Config, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let core = SimCore::new();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let home = config
        .home_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let sim = Arc::new(Woo {
        state: Arc::new(Mutex::new(WooState::new(&config))),
        config,
        core,
        home,
    });
    let backend: Arc<dyn SimBackend> = sim.clone();
    let router = router(sim);
    serve(router, listener, backend)
}

/// Start the simulator in process (see [`InMemorySim`]): `base_url` is the
/// site URL the connector is given (and the webhooks' source).
pub fn start_in_memory(config: Config, base_url: &str, options: SimOptions) -> InMemorySim {
    let core = SimCore::with_options(options);
    let home = config
        .home_url
        .clone()
        .unwrap_or_else(|| base_url.to_string());
    let sim = Arc::new(Woo {
        state: Arc::new(Mutex::new(WooState::new(&config))),
        config,
        core,
        home,
    });
    let router = router(sim.clone());
    serve_in_memory(router, base_url.to_string(), sim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_rfc5849_example_shape() {
        let params = vec![
            ("oauth_consumer_key".to_string(), "ck".to_string()),
            ("oauth_nonce".into(), "n".into()),
            ("a".into(), "x y".into()),
        ];
        let b = oauth_base_string("get", "http://h/wp-json/wc/v3/products", &params);
        assert_eq!(b, "GET&http%3A%2F%2Fh%2Fwp-json%2Fwc%2Fv3%2Fproducts&a%3Dx%2520y%26oauth_consumer_key%3Dck%26oauth_nonce%3Dn");
    }
}
