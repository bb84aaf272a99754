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
//! ```

use crate::config::{ConfigError, Secret};
use crate::sync::Connection;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use stockd_channels::{shopify, woocommerce, ReqwestTransport, Transport};
use stockd_core::ChannelId;

/// How long one HTTP call to a channel may take.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(30);

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
    },
    Woocommerce {
        channel: ChannelId,
        url: String,
        consumer_key: Secret,
        consumer_secret: Secret,
        webhook_secret: Secret,
        rate_limit: Option<(f64, f64)>,
    },
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
                channel,
                url,
            },
            other => {
                return Err(fail(format!(
                    "kind {other:?} has no connector yet (shopify, woocommerce)"
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
        } => {
            let defaults = shopify::Config::default();
            let config = shopify::Config {
                shop_url: url.clone(),
                api_version: api_version.clone(),
                access_token: access_token.expose().to_string(),
                webhook_secret: webhook_secret.expose().to_string(),
                bucket_size: bucket_size.unwrap_or(defaults.bucket_size),
                restore_rate: restore_rate.unwrap_or(defaults.restore_rate),
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
        } => {
            let config = woocommerce::Config {
                site_url: url.clone(),
                consumer_key: consumer_key.expose().to_string(),
                consumer_secret: consumer_secret.expose().to_string(),
                webhook_secret: webhook_secret.expose().to_string(),
                rate_limit: *rate_limit,
            };
            Connection {
                channel: channel.clone(),
                connector: Arc::new(woocommerce::WooCommerce::new(config, transport)),
            }
        }
    }
}
