//! Stock changes from the systems that own them, by other ways than HTTP:
//! an ERP or WMS publishing events on NATS JetStream (`nats`), and the
//! configuration of those inbound paths (`[inbound.nats]`).
//!
//! Whatever the way in, a message is parsed exactly as a `POST /v1/events`
//! body (`crate::input`) and applied by the store's writer, so the same
//! idempotency keys make a redelivery harmless.

pub mod feeds;
pub mod nats;

use crate::config::{ConfigError, Secret};
use serde::Deserialize;
use std::time::Duration;

/// `[inbound]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInbound {
    pub nats: Option<FileNatsInbound>,
}

/// `[inbound.nats]`: where the ERP/WMS events are consumed from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNatsInbound {
    pub url: String,
    /// The JetStream stream; created with `subjects` when absent.
    pub stream: String,
    pub subjects: Vec<String>,
    /// The durable pull consumer, shared by every stockd instance.
    pub durable: String,
    /// Most messages applied in one group (default 256).
    pub batch: Option<usize>,
    /// How long the server waits for an acknowledgement before redelivering
    /// (default 30 s).
    pub ack_wait_secs: Option<u64>,
    /// Environment variables holding the credentials (token, or user and password).
    pub token_env: Option<String>,
    pub user_env: Option<String>,
    pub password_env: Option<String>,
}

/// How stockd authenticates to NATS.
#[derive(Debug, Clone, Default)]
pub enum NatsAuth {
    #[default]
    None,
    Token(Secret),
    UserPassword {
        user: String,
        password: Secret,
    },
}

/// Resolved `[inbound.nats]`.
#[derive(Debug, Clone)]
pub struct NatsInboundSettings {
    pub url: String,
    pub auth: NatsAuth,
    pub stream: String,
    pub subjects: Vec<String>,
    pub durable: String,
    pub batch: usize,
    pub ack_wait: Duration,
}

/// Default of `batch`.
pub const NATS_BATCH_DEFAULT: usize = 256;
/// Largest `batch` (a group commit takes at most 20,000 events anyway).
pub const NATS_BATCH_MAX: usize = 10_000;
/// Default of `ack_wait_secs`.
pub const NATS_ACK_WAIT_DEFAULT: Duration = Duration::from_secs(30);

/// Everything inbound and outbound beyond HTTP; empty by default.
#[derive(Debug, Clone, Default)]
pub struct InboundSettings {
    pub nats: Option<NatsInboundSettings>,
    /// `[[feeds]]`.
    pub feeds: Vec<feeds::FeedSettings>,
    /// `[outbound.nats]`: stock changes published out.
    pub outbound_nats: Option<crate::outbound::publish::NatsOutboundSettings>,
}

fn nats_error(message: impl Into<String>) -> ConfigError {
    ConfigError::Inbound(format!("inbound.nats: {}", message.into()))
}

fn env_value(
    key: &str,
    var: &Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    match var {
        None => Ok(None),
        Some(var) => match env(var) {
            Some(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(nats_error(format!(
                "environment variable {var} ({key}) is not set or empty"
            ))),
        },
    }
}

impl FileInbound {
    /// Checks the values and reads the credentials from the environment.
    pub fn resolve(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<InboundSettings, ConfigError> {
        let Some(nats) = self.nats else {
            return Ok(InboundSettings::default());
        };
        if !(nats.url.starts_with("nats://") || nats.url.starts_with("tls://")) {
            return Err(nats_error("url must start with nats:// or tls://"));
        }
        if nats.stream.is_empty() || nats.stream.contains(['.', ' ', '*', '>']) {
            return Err(nats_error(
                "stream must be a non-empty name without '.', ' ', '*' or '>'",
            ));
        }
        if nats.durable.is_empty() || nats.durable.contains(['.', ' ', '*', '>']) {
            return Err(nats_error(
                "durable must be a non-empty name without '.', ' ', '*' or '>'",
            ));
        }
        if nats.subjects.is_empty() || nats.subjects.iter().any(|s| s.trim().is_empty()) {
            return Err(nats_error("subjects must name at least one subject"));
        }
        let batch = nats.batch.unwrap_or(NATS_BATCH_DEFAULT);
        if batch == 0 || batch > NATS_BATCH_MAX {
            return Err(nats_error(format!(
                "batch must be between 1 and {NATS_BATCH_MAX}"
            )));
        }
        let ack_wait = nats
            .ack_wait_secs
            .map_or(NATS_ACK_WAIT_DEFAULT, Duration::from_secs);
        if ack_wait.is_zero() {
            return Err(nats_error("ack_wait_secs must be at least 1"));
        }
        let token = env_value("token_env", &nats.token_env, env)?;
        let user = env_value("user_env", &nats.user_env, env)?;
        let password = env_value("password_env", &nats.password_env, env)?;
        let auth = match (token, user, password) {
            (None, None, None) => NatsAuth::None,
            (Some(token), None, None) => NatsAuth::Token(Secret::new(token)),
            (None, Some(user), Some(password)) => NatsAuth::UserPassword {
                user,
                password: Secret::new(password),
            },
            _ => {
                return Err(nats_error(
                    "give either token_env, or user_env with password_env",
                ))
            }
        };
        Ok(InboundSettings {
            nats: Some(NatsInboundSettings {
                url: nats.url,
                auth,
                stream: nats.stream,
                subjects: nats.subjects,
                durable: nats.durable,
                batch,
                ack_wait,
            }),
            feeds: Vec::new(),
            outbound_nats: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<InboundSettings, ConfigError> {
        let file: crate::config::FileConfig = toml::from_str(text).expect("toml");
        let env = |var: &str| match var {
            "NATS_TOKEN" => Some("s3cret".to_string()),
            _ => None,
        };
        file.inbound.resolve(&env)
    }

    #[test]
    fn nats_inbound_reads_its_table_and_credentials_from_the_environment() {
        let settings = parse(
            r#"
            [inbound.nats]
            url = "nats://127.0.0.1:4222"
            stream = "ERP"
            subjects = ["erp.stock.>"]
            durable = "stockd"
            batch = 500
            token_env = "NATS_TOKEN"
            "#,
        )
        .expect("valid");
        let nats = settings.nats.expect("nats");
        assert_eq!(nats.batch, 500);
        assert_eq!(nats.ack_wait, NATS_ACK_WAIT_DEFAULT);
        assert!(matches!(&nats.auth, NatsAuth::Token(t) if t.expose() == "s3cret"));
        assert!(
            !format!("{nats:?}").contains("s3cret"),
            "secrets never print"
        );
    }

    #[test]
    fn nats_inbound_refuses_bad_values_with_the_key() {
        let base = |extra: &str| {
            format!(
                "[inbound.nats]\nurl = \"nats://h:4222\"\nstream = \"S\"\nsubjects = [\"a.>\"]\ndurable = \"d\"\n{extra}"
            )
        };
        for (extra, needle) in [
            ("batch = 0", "batch"),
            ("token_env = \"MISSING\"", "MISSING"),
            ("ack_wait_secs = 0", "ack_wait_secs"),
        ] {
            let error = parse(&base(extra)).expect_err(extra).to_string();
            assert!(error.contains(needle), "{extra}: {error}");
        }
        let error = parse(&base("").replace("nats://", "http://"))
            .expect_err("scheme")
            .to_string();
        assert!(error.contains("url"), "{error}");
    }
}
