//! Channel connections from the config file: `[connectors.<channel id>]`
//! with the channel's kind, base URL, API version and the names of the
//! environment variables that hold its secrets (secrets never sit in the
//! file and are never returned by the API).
//!
//! ```toml
//! [connectors.shop-main]
//! kind = "shopify"
//! url = "https://example.myshopify.com"
//! api_version = "2025-01"
//! access_token_env = "SHOP_MAIN_TOKEN"
//! webhook_secret_env = "SHOP_MAIN_WEBHOOK_SECRET"
//!
//! [connectors.woo]
//! kind = "woocommerce"
//! url = "https://shop.example"
//! consumer_key_env = "WOO_KEY"
//! consumer_secret_env = "WOO_SECRET"
//! webhook_secret_env = "WOO_WEBHOOK_SECRET"
//! restock_on_refund = true            # any kind; default false
//!
//! [connectors.bol]
//! kind = "bol"
//! url = "https://api.bol.com"
//! login_url = "https://login.bol.com"
//! client_id_env = "BOL_CLIENT_ID"
//! client_secret_env = "BOL_CLIENT_SECRET"
//! offers_api = "v10"                  # or "v11" where the account has it
//!
//! [connectors.amazon]
//! kind = "amazon"
//! url = "https://sellingpartnerapi-eu.amazon.com"
//! login_url = "https://api.amazon.com/auth/o2/token"
//! client_id_env = "LWA_CLIENT_ID"
//! client_secret_env = "LWA_CLIENT_SECRET"
//! refresh_token_env = "LWA_REFRESH_TOKEN"
//! seller_id = "A2EXAMPLE"
//! marketplace_id = "A1805IZSGTT6HS"
//! webhook_secret_env = "AMAZON_NOTIFICATION_SECRET"
//!
//! [connectors.gmc]
//! kind = "gmc"
//! url = "https://merchantapi.googleapis.com"
//! login_url = "https://oauth2.googleapis.com/token"
//! account_id = "123456789"
//! data_source = "accounts/123456789/dataSources/10001"
//! service_account_email = "stockd@project.iam.gserviceaccount.com"
//! private_key_env = "GMC_PRIVATE_KEY"  # the PKCS#8 PEM of the service account
//! self_signed_jwt = false              # true: sign the bearer token, skip login_url
//! ```

use crate::config::{ConfigError, Secret};
use crate::outbound::dispatch::Connection;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use stockd_channels::{amazon, bol, gmc, shopify, woocommerce, ReqwestTransport, Transport};
use stockd_core::ChannelId;

/// How long one HTTP call to a channel may take.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default seconds between Shopify and WooCommerce order reads
/// (`order_poll_secs`).
const ORDER_POLL_SECS: u64 = 60;

/// `order_poll_secs` as an interval: the default when absent, `None` at 0.
fn order_poll(secs: Option<u64>) -> Option<Duration> {
    match secs.unwrap_or(ORDER_POLL_SECS) {
        0 => None,
        secs => Some(Duration::from_secs(secs)),
    }
}

/// One `[connectors.<id>]` table, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConnector {
    pub kind: String,
    pub url: String,
    pub api_version: Option<String>,
    pub access_token_env: Option<String>,
    pub consumer_key_env: Option<String>,
    pub consumer_secret_env: Option<String>,
    pub webhook_secret_env: Option<String>,
    /// Shopify plan: cost bucket size and restore rate per second.
    pub bucket_size: Option<f64>,
    pub restore_rate: Option<f64>,
    /// Host rate limit (WooCommerce): burst and requests per second.
    pub rate_burst: Option<f64>,
    pub rate_per_second: Option<f64>,
    /// Token endpoint (bol, Amazon, Google), when not the channel's default.
    pub login_url: Option<String>,
    pub client_id_env: Option<String>,
    pub client_secret_env: Option<String>,
    /// Amazon: the LWA refresh token.
    pub refresh_token_env: Option<String>,
    /// bol.com: `v10` (default) or `v11`.
    pub offers_api: Option<String>,
    /// Amazon.
    pub seller_id: Option<String>,
    pub marketplace_id: Option<String>,
    /// Google Merchant Center.
    pub account_id: Option<String>,
    pub data_source: Option<String>,
    pub service_account_email: Option<String>,
    pub private_key_env: Option<String>,
    /// Google: a self-signed JWT as the bearer token instead of the token
    /// endpoint (default false).
    pub self_signed_jwt: Option<bool>,
    /// A refund with restock on this channel verifies the return at once
    /// (sellable again) instead of leaving it pending for the warehouse
    /// (default false).
    pub restock_on_refund: Option<bool>,
    /// Shopify and WooCommerce: seconds between reads of recently modified
    /// orders, the backstop for lost webhooks (default 60; 0 turns it off).
    pub order_poll_secs: Option<u64>,
}

/// The channels whose tables set `restock_on_refund = true`.
pub fn restock_on_refund(
    tables: &BTreeMap<String, FileConnector>,
) -> Result<std::collections::BTreeSet<ChannelId>, ConfigError> {
    tables
        .iter()
        .filter(|(_, table)| table.restock_on_refund == Some(true))
        .map(|(id, _)| {
            ChannelId::parse(id.clone()).map_err(|e| ConfigError::Connector {
                channel: id.clone(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// A connection with its secrets resolved.
#[derive(Debug, Clone)]
pub enum ConnectorSettings {
    Shopify {
        channel: ChannelId,
        url: String,
        api_version: String,
        access_token: Secret,
        webhook_secret: Secret,
        bucket_size: Option<f64>,
        restore_rate: Option<f64>,
        /// `None`: webhooks only.
        order_poll_interval: Option<Duration>,
    },
    Woocommerce {
        channel: ChannelId,
        url: String,
        consumer_key: Secret,
        consumer_secret: Secret,
        webhook_secret: Secret,
        rate_limit: Option<(f64, f64)>,
        /// `None`: webhooks only.
        order_poll_interval: Option<Duration>,
    },
    Bol {
        channel: ChannelId,
        url: String,
        login_url: Option<String>,
        client_id: Secret,
        client_secret: Secret,
        offers_v11: bool,
    },
    Amazon {
        channel: ChannelId,
        url: String,
        login_url: Option<String>,
        client_id: Secret,
        client_secret: Secret,
        refresh_token: Secret,
        seller_id: String,
        marketplace_id: Option<String>,
        notification_secret: Secret,
    },
    Gmc {
        channel: ChannelId,
        url: String,
        login_url: Option<String>,
        account_id: String,
        data_source: String,
        service_account_email: String,
        private_key: Secret,
        self_signed_jwt: bool,
    },
}

fn required(
    channel: &str,
    field: &'static str,
    value: &Option<String>,
) -> Result<String, ConfigError> {
    value
        .clone()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ConfigError::Connector {
            channel: channel.to_string(),
            message: format!("{field} is required"),
        })
}

fn secret(
    channel: &str,
    field: &'static str,
    var: &Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let var = var.as_ref().ok_or_else(|| ConfigError::Connector {
        channel: channel.to_string(),
        message: format!("{field} is required"),
    })?;
    match env(var) {
        Some(value) if !value.is_empty() => Ok(Secret::new(value)),
        _ => Err(ConfigError::Connector {
            channel: channel.to_string(),
            message: format!("environment variable {var} ({field}) is not set or empty"),
        }),
    }
}

/// Resolves every `[connectors.*]` table.
pub fn resolve(
    tables: BTreeMap<String, FileConnector>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ConnectorSettings>, ConfigError> {
    let mut out = Vec::new();
    for (id, table) in tables {
        let fail = |message: String| ConfigError::Connector {
            channel: id.clone(),
            message,
        };
        let channel = ChannelId::parse(id.clone()).map_err(|e| fail(e.to_string()))?;
        if !(table.url.starts_with("https://") || table.url.starts_with("http://")) {
            return Err(fail(format!(
                "url {:?} must start with https:// or http://",
                table.url
            )));
        }
        let url = table.url.trim_end_matches('/').to_string();
        out.push(match table.kind.as_str() {
            "shopify" => ConnectorSettings::Shopify {
                api_version: table
                    .api_version
                    .clone()
                    .unwrap_or_else(|| "2025-01".into()),
                access_token: secret(&id, "access_token_env", &table.access_token_env, env)?,
                webhook_secret: secret(&id, "webhook_secret_env", &table.webhook_secret_env, env)?,
                bucket_size: table.bucket_size,
                restore_rate: table.restore_rate,
                order_poll_interval: order_poll(table.order_poll_secs),
                channel,
                url,
            },
            "woocommerce" => ConnectorSettings::Woocommerce {
                consumer_key: secret(&id, "consumer_key_env", &table.consumer_key_env, env)?,
                consumer_secret: secret(
                    &id,
                    "consumer_secret_env",
                    &table.consumer_secret_env,
                    env,
                )?,
                webhook_secret: secret(&id, "webhook_secret_env", &table.webhook_secret_env, env)?,
                rate_limit: table.rate_burst.zip(table.rate_per_second),
                order_poll_interval: order_poll(table.order_poll_secs),
                channel,
                url,
            },
            "bol" => ConnectorSettings::Bol {
                login_url: table.login_url.clone(),
                client_id: secret(&id, "client_id_env", &table.client_id_env, env)?,
                client_secret: secret(&id, "client_secret_env", &table.client_secret_env, env)?,
                offers_v11: match table.offers_api.as_deref() {
                    None | Some("v10") => false,
                    Some("v11") => true,
                    Some(other) => {
                        return Err(fail(format!("offers_api {other:?}: use v10 or v11")))
                    }
                },
                channel,
                url,
            },
            "amazon" => ConnectorSettings::Amazon {
                login_url: table.login_url.clone(),
                client_id: secret(&id, "client_id_env", &table.client_id_env, env)?,
                client_secret: secret(&id, "client_secret_env", &table.client_secret_env, env)?,
                refresh_token: secret(&id, "refresh_token_env", &table.refresh_token_env, env)?,
                seller_id: required(&id, "seller_id", &table.seller_id)?,
                marketplace_id: table.marketplace_id.clone(),
                notification_secret: secret(
                    &id,
                    "webhook_secret_env",
                    &table.webhook_secret_env,
                    env,
                )?,
                channel,
                url,
            },
            "gmc" => ConnectorSettings::Gmc {
                login_url: table.login_url.clone(),
                account_id: required(&id, "account_id", &table.account_id)?,
                data_source: required(&id, "data_source", &table.data_source)?,
                service_account_email: required(
                    &id,
                    "service_account_email",
                    &table.service_account_email,
                )?,
                private_key: secret(&id, "private_key_env", &table.private_key_env, env)?,
                self_signed_jwt: table.self_signed_jwt.unwrap_or(false),
                channel,
                url,
            },
            other => {
                return Err(fail(format!(
                    "unknown kind {other:?} (shopify, woocommerce, bol, amazon, gmc)"
                )))
            }
        });
    }
    Ok(out)
}

/// Builds the connectors, all sharing one HTTP client.
pub fn build(
    settings: &[ConnectorSettings],
) -> Result<Vec<Connection>, stockd_channels::ChannelError> {
    let transport: Arc<dyn Transport> = Arc::new(ReqwestTransport::new(CHANNEL_TIMEOUT)?);
    Ok(settings
        .iter()
        .map(|s| connect(s, transport.clone()))
        .collect())
}

/// One connector over `transport`.
pub fn connect(settings: &ConnectorSettings, transport: Arc<dyn Transport>) -> Connection {
    match settings {
        ConnectorSettings::Shopify {
            channel,
            url,
            api_version,
            access_token,
            webhook_secret,
            bucket_size,
            restore_rate,
            order_poll_interval,
        } => {
            let defaults = shopify::Config::default();
            let config = shopify::Config {
                shop_url: url.clone(),
                api_version: api_version.clone(),
                access_token: access_token.expose().to_string(),
                webhook_secret: webhook_secret.expose().to_string(),
                bucket_size: bucket_size.unwrap_or(defaults.bucket_size),
                restore_rate: restore_rate.unwrap_or(defaults.restore_rate),
                order_poll_interval: *order_poll_interval,
                ..defaults
            };
            Connection {
                channel: channel.clone(),
                connector: Arc::new(shopify::Shopify::new(config, transport)),
            }
        }
        ConnectorSettings::Woocommerce {
            channel,
            url,
            consumer_key,
            consumer_secret,
            webhook_secret,
            rate_limit,
            order_poll_interval,
        } => {
            let config = woocommerce::Config {
                site_url: url.clone(),
                consumer_key: consumer_key.expose().to_string(),
                consumer_secret: consumer_secret.expose().to_string(),
                webhook_secret: webhook_secret.expose().to_string(),
                rate_limit: *rate_limit,
                order_poll_interval: *order_poll_interval,
                ..Default::default()
            };
            Connection {
                channel: channel.clone(),
                connector: Arc::new(woocommerce::WooCommerce::new(config, transport)),
            }
        }
        ConnectorSettings::Bol {
            channel,
            url,
            login_url,
            client_id,
            client_secret,
            offers_v11,
        } => {
            let defaults = bol::Config::default();
            let config = bol::Config {
                api_url: url.clone(),
                login_url: login_url.clone().unwrap_or(defaults.login_url.clone()),
                client_id: client_id.expose().to_string(),
                client_secret: client_secret.expose().to_string(),
                offers_api: if *offers_v11 {
                    bol::OffersApi::V11
                } else {
                    bol::OffersApi::V10
                },
                ..defaults
            };
            Connection {
                channel: channel.clone(),
                connector: Arc::new(bol::Bol::new(config, transport)),
            }
        }
        ConnectorSettings::Amazon {
            channel,
            url,
            login_url,
            client_id,
            client_secret,
            refresh_token,
            seller_id,
            marketplace_id,
            notification_secret,
        } => {
            let defaults = amazon::Config::default();
            let config = amazon::Config {
                endpoint: url.clone(),
                lwa_url: login_url.clone().unwrap_or(defaults.lwa_url.clone()),
                client_id: client_id.expose().to_string(),
                client_secret: client_secret.expose().to_string(),
                refresh_token: refresh_token.expose().to_string(),
                seller_id: seller_id.clone(),
                marketplace_id: marketplace_id
                    .clone()
                    .unwrap_or(defaults.marketplace_id.clone()),
                notification_secret: notification_secret.expose().to_string(),
                ..defaults
            };
            Connection {
                channel: channel.clone(),
                connector: Arc::new(amazon::Amazon::new(config, transport)),
            }
        }
        ConnectorSettings::Gmc {
            channel,
            url,
            login_url,
            account_id,
            data_source,
            service_account_email,
            private_key,
            self_signed_jwt,
        } => {
            let defaults = gmc::Config::default();
            let config = gmc::Config {
                api_url: url.clone(),
                token_url: login_url.clone().unwrap_or(defaults.token_url.clone()),
                account_id: account_id.clone(),
                data_source: data_source.clone(),
                service_account_email: service_account_email.clone(),
                private_key_pem: private_key.expose().to_string(),
                self_signed_jwt: *self_signed_jwt,
                ..defaults
            };
            Connection {
                channel: channel.clone(),
                connector: Arc::new(gmc::Gmc::new(config, transport)),
            }
        }
    }
}
