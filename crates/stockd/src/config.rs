//! Configuration: a TOML file, the environment and command-line flags, merged
//! with the precedence flags > environment > file > defaults into plain values
//! that are passed explicitly to whoever needs them. Nothing here is global.
//!
//! Flags and environment variables are read by clap (see `cli.rs`), which
//! already prefers a flag over its variable; this module only lays those
//! values over the file and the defaults, and resolves token secrets.

use crate::auth::{ApiToken, Role};
use serde::Deserialize;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub const LISTEN_DEFAULT: &str = "127.0.0.1:8080";
pub const DATABASE_DEFAULT: &str = "sqlite://stockd.db";
/// Body limit of every route but `POST /v1/events`.
pub const BODY_LIMIT_BYTES_DEFAULT: usize = 1024 * 1024;
/// Body limit of `POST /v1/events` (10,000 events of a few hundred bytes fit).
pub const EVENTS_BODY_LIMIT_BYTES_DEFAULT: usize = 32 * 1024 * 1024;
pub const LOG_FILTER_DEFAULT: &str = "info";

/// A secret (API token) whose `Debug` and `Display` never print it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(raw: impl Into<String>) -> Secret {
        Secret(raw.into())
    }
    /// The secret itself, for the one place that must compare or send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The file, as written. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database: Option<String>,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub http: FileHttp,
    #[serde(default)]
    pub auth: FileAuth,
    /// Channel connections by channel id.
    #[serde(default)]
    pub connectors: std::collections::BTreeMap<String, crate::connections::FileConnector>,
    #[serde(default)]
    pub sync: FileSync,
    /// `[inbound.nats]`: events from an ERP/WMS over NATS JetStream.
    #[serde(default)]
    pub inbound: crate::inbound::FileInbound,
    /// `[[feeds]]`: supplier stock and ASN files.
    #[serde(default)]
    pub feeds: Vec<crate::inbound::feeds::FileFeed>,
    /// `[outbound.nats]`: stock changes published out.
    #[serde(default)]
    pub outbound: crate::outbound::publish::FileOutbound,
    #[serde(default)]
    pub reconciliation: FileReconciliation,
    #[serde(default)]
    pub audit: FileAudit,
}

/// `[audit]`: how long every push attempt is kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAudit {
    /// Days (default 30).
    pub retention_days: Option<u64>,
}

/// `[reconciliation]`: when every channel is read back, and where drift is
/// only reported.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReconciliation {
    /// Daily start, `HH:MM` (default `02:00`); `"off"` runs on demand only.
    pub daily_at: Option<String>,
    /// The schedule's fixed UTC offset, `+HH:MM` / `-HH:MM` / `Z` (default
    /// `Z`). There is no time-zone database: change it for daylight saving.
    pub utc_offset: Option<String>,
    /// Channels whose drift is reported but not fixed.
    #[serde(default)]
    pub report_only: Vec<String>,
    /// Listings per page (default 250).
    pub page_size: Option<usize>,
    /// Before a differing listing is read again to confirm (default 2000).
    pub confirm_delay_ms: Option<u64>,
    /// Read large catalogues through the channel's bulk read (export,
    /// report, bulk operation) in one go (default true).
    pub bulk_read: Option<bool>,
    /// From how many listings a channel is read in bulk (default: the
    /// channel's own, e.g. 1,000 on bol.com, 200 on WooCommerce).
    pub bulk_read_from: Option<usize>,
}

/// `[sync]`: when failing updates are dead-lettered.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSync {
    pub max_attempts: Option<u32>,
    pub max_age_secs: Option<u64>,
    pub revive_after_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    pub format: Option<LogFormat>,
    pub filter: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp {
    pub body_limit_bytes: Option<usize>,
    pub events_body_limit_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    #[serde(default)]
    pub tokens: Vec<FileToken>,
}

/// One `[[auth.tokens]]` entry. The secret comes from the environment
/// variable named by `token_env` (preferred) or from `token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileToken {
    pub name: String,
    pub role: Role,
    pub token_env: Option<String>,
    pub token: Option<Secret>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid listen address {0:?}: expected IP:PORT, e.g. 127.0.0.1:8080")]
    Listen(String),
    #[error("{key} must be at least 1 byte")]
    BodyLimit { key: &'static str },
    #[error("token {name:?}: set exactly one of token_env and token")]
    TokenSource { name: String },
    #[error("token {name:?}: environment variable {var} is not set or empty")]
    TokenEnvMissing { name: String, var: String },
    #[error("token {name:?}: the secret is empty")]
    TokenEmpty { name: String },
    #[error("token name {0:?} is used twice")]
    TokenNameTwice(String),
    #[error("tokens {first:?} and {second:?} have the same secret")]
    TokenSecretTwice { first: String, second: String },
    #[error("a token needs a name")]
    TokenNameEmpty,
    #[error("connector {channel:?}: {message}")]
    Connector { channel: String, message: String },
    #[error("{0}")]
    Reconciliation(String),
    #[error("sync.max_attempts must be at least 1")]
    SyncAttempts,
    #[error("{0}")]
    Inbound(String),
    #[error("invalid log filter {filter:?}: {message}")]
    LogFilter { filter: String, message: String },
}

impl FileConfig {
    /// Reads a TOML config file; unknown keys are errors.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })
    }
}

/// Values given by flags or the environment (clap has merged those two).
#[derive(Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub log_format: Option<LogFormat>,
    pub log_filter: Option<String>,
}

/// Body size limits of the HTTP API.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub body_limit_bytes: usize,
    pub events_body_limit_bytes: usize,
}

/// Everything `spawn` needs to run the server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    pub http: HttpLimits,
    /// Empty means no authentication (allowed on loopback addresses only).
    pub tokens: Vec<ApiToken>,
    /// Channel connections (from the config file).
    pub connectors: Vec<crate::connections::ConnectorSettings>,
    /// Connectors given directly (tests and the demo: in-process channels).
    pub extra_connections: Vec<crate::outbound::dispatch::Connection>,
    /// Channels whose refunds with restock verify the return at once
    /// (`restock_on_refund = true`): the units are sellable again without
    /// the warehouse's check.
    pub restock_on_refund: std::collections::BTreeSet<stockd_core::ChannelId>,
    pub retry: stockd_core::retry::RetryPolicy,
    /// Inbound and outbound paths beyond HTTP (NATS); none by default.
    pub inbound: crate::inbound::InboundSettings,
    /// Reconciliation runs (schedule, report-only channels, paging).
    pub reconcile: crate::outbound::reconcile::ReconcileConfig,
}

impl ServeConfig {
    /// A server on `listen` with `database_url` and nothing else configured:
    /// no tokens (loopback only), no connectors, default limits and retries,
    /// no bus. Tests, benchmarks and the demo start from this and set what
    /// they need, so a new setting has one default.
    pub fn plain(listen: SocketAddr, database_url: String) -> ServeConfig {
        ServeConfig {
            listen,
            database_url,
            http: HttpLimits {
                body_limit_bytes: BODY_LIMIT_BYTES_DEFAULT,
                events_body_limit_bytes: EVENTS_BODY_LIMIT_BYTES_DEFAULT,
            },
            tokens: Vec::new(),
            connectors: Vec::new(),
            extra_connections: Vec::new(),
            restock_on_refund: Default::default(),
            retry: stockd_core::retry::RetryPolicy::default(),
            inbound: Default::default(),
            reconcile: Default::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

/// The resolved configuration of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub serve: ServeConfig,
    pub log: LogSettings,
}

impl Settings {
    /// Lays `overrides` over `file` over the defaults. `env` looks up the
    /// variables named by `token_env` (injected so tests need no process env).
    pub fn resolve(
        file: FileConfig,
        overrides: Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let listen_raw = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| LISTEN_DEFAULT.to_string());
        let listen = parse_listen(&listen_raw)?;
        let database_url = overrides
            .database
            .or(file.database)
            .unwrap_or_else(|| DATABASE_DEFAULT.to_string());
        let http = HttpLimits {
            body_limit_bytes: file
                .http
                .body_limit_bytes
                .unwrap_or(BODY_LIMIT_BYTES_DEFAULT),
            events_body_limit_bytes: file
                .http
                .events_body_limit_bytes
                .unwrap_or(EVENTS_BODY_LIMIT_BYTES_DEFAULT),
        };
        if http.body_limit_bytes == 0 {
            return Err(ConfigError::BodyLimit {
                key: "http.body_limit_bytes",
            });
        }
        if http.events_body_limit_bytes == 0 {
            return Err(ConfigError::BodyLimit {
                key: "http.events_body_limit_bytes",
            });
        }
        let tokens = resolve_tokens(file.auth.tokens, env)?;
        let restock_on_refund = crate::connections::restock_on_refund(&file.connectors)?;
        let connectors = crate::connections::resolve(file.connectors, env)?;
        let mut inbound = file.inbound.resolve(env)?;
        inbound.feeds = crate::inbound::feeds::resolve(file.feeds)?;
        inbound.outbound_nats = file.outbound.resolve(env)?;
        let mut retry = stockd_core::retry::RetryPolicy::default();
        if let Some(attempts) = file.sync.max_attempts {
            if attempts == 0 {
                return Err(ConfigError::SyncAttempts);
            }
            retry.max_attempts = attempts;
        }
        if let Some(secs) = file.sync.max_age_secs {
            retry.max_age = std::time::Duration::from_secs(secs);
        }
        if let Some(secs) = file.sync.revive_after_secs {
            retry.revive_after = std::time::Duration::from_secs(secs);
        }
        let mut reconcile = resolve_reconciliation(file.reconciliation)?;
        if let Some(days) = file.audit.retention_days {
            reconcile.audit_retention = std::time::Duration::from_secs(days * 24 * 3600);
        }
        let log = LogSettings {
            format: overrides
                .log_format
                .or(file.log.format)
                .unwrap_or(LogFormat::Text),
            filter: overrides
                .log_filter
                .or(file.log.filter)
                .unwrap_or_else(|| LOG_FILTER_DEFAULT.to_string()),
        };
        Ok(Settings {
            serve: ServeConfig {
                listen,
                database_url,
                http,
                tokens,
                connectors,
                extra_connections: Vec::new(),
                restock_on_refund,
                retry,
                inbound,
                reconcile,
            },
            log,
        })
    }
}

fn resolve_reconciliation(
    file: FileReconciliation,
) -> Result<crate::outbound::reconcile::ReconcileConfig, ConfigError> {
    use crate::outbound::reconcile::{DailyAt, ReconcileConfig};
    let schedule = match file.daily_at.as_deref() {
        Some("off") => None,
        at => Some(
            DailyAt::parse(
                at.unwrap_or("02:00"),
                file.utc_offset.as_deref().unwrap_or("Z"),
            )
            .map_err(ConfigError::Reconciliation)?,
        ),
    };
    let mut config = ReconcileConfig {
        schedule,
        ..ReconcileConfig::default()
    };
    for raw in file.report_only {
        let channel = stockd_core::ChannelId::parse(raw.clone()).map_err(|e| {
            ConfigError::Reconciliation(format!("reconciliation.report_only {raw:?}: {e}"))
        })?;
        config.report_only.insert(channel);
    }
    if let Some(size) = file.page_size {
        if size == 0 {
            return Err(ConfigError::Reconciliation(
                "reconciliation.page_size must be at least 1".into(),
            ));
        }
        config.page_size = size;
    }
    if let Some(ms) = file.confirm_delay_ms {
        config.confirm_delay = std::time::Duration::from_millis(ms);
    }
    if let Some(bulk) = file.bulk_read {
        config.bulk_read = bulk;
    }
    if let Some(from) = file.bulk_read_from {
        if from == 0 {
            return Err(ConfigError::Reconciliation(
                "reconciliation.bulk_read_from must be at least 1".into(),
            ));
        }
        config.bulk_read_from = Some(from);
    }
    Ok(config)
}

/// `IP:PORT`; `localhost:PORT` is taken as 127.0.0.1.
pub fn parse_listen(raw: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match raw.strip_prefix("localhost:").map(str::parse::<u16>) {
        Some(Ok(port)) => Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        _ => Err(ConfigError::Listen(raw.to_string())),
    }
}

fn resolve_tokens(
    tokens: Vec<FileToken>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ApiToken>, ConfigError> {
    let mut resolved: Vec<ApiToken> = Vec::with_capacity(tokens.len());
    for token in tokens {
        let name = token.name.trim().to_string();
        if name.is_empty() {
            return Err(ConfigError::TokenNameEmpty);
        }
        let secret = match (&token.token_env, token.token) {
            (Some(var), None) => match env(var) {
                Some(value) if !value.is_empty() => Secret::new(value),
                _ => {
                    return Err(ConfigError::TokenEnvMissing {
                        name,
                        var: var.clone(),
                    })
                }
            },
            (None, Some(secret)) => secret,
            _ => return Err(ConfigError::TokenSource { name }),
        };
        if secret.expose().is_empty() {
            return Err(ConfigError::TokenEmpty { name });
        }
        if resolved.iter().any(|t| t.name == name) {
            return Err(ConfigError::TokenNameTwice(name));
        }
        if let Some(twin) = resolved.iter().find(|t| t.secret == secret) {
            return Err(ConfigError::TokenSecretTwice {
                first: twin.name.clone(),
                second: name,
            });
        }
        resolved.push(ApiToken {
            name,
            role: token.role,
            secret,
        });
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_apply_without_file_or_flags() {
        let s = Settings::resolve(FileConfig::default(), Overrides::default(), &no_env).unwrap();
        assert_eq!(s.serve.listen.to_string(), LISTEN_DEFAULT);
        assert_eq!(s.serve.database_url, DATABASE_DEFAULT);
        assert_eq!(s.serve.http.events_body_limit_bytes, 32 * 1024 * 1024);
        assert_eq!(s.log.format, LogFormat::Text);
        assert!(s.serve.tokens.is_empty());
    }

    #[test]
    fn restock_on_refund_is_set_per_connector() {
        let f = file(
            r#"
            [connectors.woo]
            kind = "woocommerce"
            url = "https://shop.example"
            consumer_key_env = "K"
            consumer_secret_env = "S"
            webhook_secret_env = "H"
            restock_on_refund = true
            [connectors.woo-b2b]
            kind = "woocommerce"
            url = "https://b2b.example"
            consumer_key_env = "K"
            consumer_secret_env = "S"
            webhook_secret_env = "H"
            "#,
        );
        let env = |_: &str| Some("x".to_string());
        let s = Settings::resolve(f, Overrides::default(), &env).unwrap();
        let channels: Vec<&str> = s
            .serve
            .restock_on_refund
            .iter()
            .map(|c| c.as_str())
            .collect();
        assert_eq!(channels, ["woo"]);
    }

    #[test]
    fn overrides_beat_the_file() {
        let f = file(
            r#"
            listen = "0.0.0.0:9000"
            database = "sqlite://file.db"
            [log]
            format = "json"
            "#,
        );
        let o = Overrides {
            database: Some("postgres://db/stockd".into()),
            ..Overrides::default()
        };
        let s = Settings::resolve(f, o, &no_env).unwrap();
        assert_eq!(s.serve.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.serve.database_url, "postgres://db/stockd");
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn tokens_come_from_env_or_file_and_never_print() {
        let f = file(
            r#"
            [[auth.tokens]]
            name = "erp"
            role = "ingest"
            token_env = "ERP_TOKEN"
            [[auth.tokens]]
            name = "ops"
            role = "admin"
            token = "s3cret-admin"
            "#,
        );
        let env = |var: &str| (var == "ERP_TOKEN").then(|| "s3cret-erp".to_string());
        let s = Settings::resolve(f, Overrides::default(), &env).unwrap();
        assert_eq!(s.serve.tokens.len(), 2);
        assert_eq!(s.serve.tokens[0].secret.expose(), "s3cret-erp");
        let printed = format!("{:?} {}", s, s.serve.tokens[1].secret);
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn bad_token_entries_are_refused() {
        let check = |text: &str, expect: &str| {
            let err = Settings::resolve(file(text), Overrides::default(), &no_env).unwrap_err();
            assert!(
                err.to_string().contains(expect),
                "{err} does not contain {expect}"
            );
        };
        check(
            "[[auth.tokens]]\nname = \"a\"\nrole = \"read\"\ntoken_env = \"NOPE\"",
            "NOPE is not set",
        );
        check(
            "[[auth.tokens]]\nname = \"a\"\nrole = \"read\"",
            "exactly one of token_env and token",
        );
        check(
            "[[auth.tokens]]\nname = \"a\"\nrole = \"read\"\ntoken = \"x\"\n\
             [[auth.tokens]]\nname = \"b\"\nrole = \"admin\"\ntoken = \"x\"",
            "same secret",
        );
    }

    #[test]
    fn unknown_keys_and_roles_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        assert!(toml::from_str::<FileConfig>(
            "[[auth.tokens]]\nname = \"a\"\nrole = \"root\"\ntoken = \"x\""
        )
        .is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("localhost:80").unwrap().to_string(),
            "127.0.0.1:80"
        );
        assert_eq!(parse_listen("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert!(parse_listen("example.org:80").is_err());
    }
}
