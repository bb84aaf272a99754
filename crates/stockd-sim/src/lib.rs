//! Channel simulators: faithful local stand-ins for the Shopify Admin GraphQL API, the
//! WooCommerce REST v3 API, the bol.com Retailer API, Amazon's Selling Partner API and Google's
//! Merchant API, with simulated customers, injectable faults and signed webhooks.
//!
//! Every simulator serves its channel API plus the same `/_sim` operator endpoints
//! (`/_sim/listings`, `/_sim/orders`, `/_sim/faults`, `/_sim/stats`) and is driven in-process
//! through [`RunningSim`].

pub mod amazon;
pub mod bol;
mod common;
pub mod gmc;
pub mod shopify;
pub mod woocommerce;

pub use common::{
    hmac_sha256_base64, php_json_encode, Faults, InMemorySim, NewListing, RunningSim, SimClock,
    SimError, SimListing, SimOptions, SimStats, WebhookDelivery, WebhookSink,
};
