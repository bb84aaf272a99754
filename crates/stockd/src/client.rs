//! Where the CLI commands send their work: straight into the database, or to
//! a running server over HTTP. Either way a refused request comes back with
//! the API's error code and details, so the commands report both alike.

use crate::config::Secret;
use crate::error::{ApiError, ErrorBody, ErrorDetail, ErrorObject};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use stockd_core::{Event, EventResult, RequestError, Sku, Variant};
use stockd_store::{Store, StoreError};

/// Time allowed to connect to the server.
const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Time allowed for one request (a chunk of 1,000 events commits well within it).
const REQUEST_TIMEOUT_MS: u64 = 120_000;

/// Why a request did not go through.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request was refused whole (nothing of it applied).
    #[error("{code}: {message}")]
    Refused {
        code: String,
        message: String,
        details: Vec<ErrorDetail>,
    },
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    #[error("unexpected answer from the server (HTTP {status}): {body}")]
    Protocol { status: u16, body: String },
}

impl From<ApiError> for SendError {
    fn from(error: ApiError) -> SendError {
        let ErrorObject {
            code,
            message,
            details,
        } = error.into();
        SendError::Refused {
            code,
            message,
            details,
        }
    }
}

/// Counts of a variant upsert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct UpsertCounts {
    pub upserted: usize,
    pub replayed: usize,
}

/// A client of a running stockd server.
pub struct ApiClient {
    /// Always ends with `/`, so relative paths join below it.
    base: Url,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(server: &str, token: Option<Secret>) -> anyhow::Result<ApiClient> {
        let mut base = Url::parse(server)
            .map_err(|e| anyhow::anyhow!("invalid server url {server:?}: {e}"))?;
        if base.scheme() != "http" {
            anyhow::bail!("server url {server:?} must start with http:// (TLS belongs to a proxy in front of stockd)");
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .build()?;
        Ok(ApiClient { base, token, http })
    }

    fn url(&self, path: &str, segment: Option<&str>) -> Result<Url, SendError> {
        let mut url = self.base.join(path).map_err(|e| SendError::Protocol {
            status: 0,
            body: e.to_string(),
        })?;
        if let Some(segment) = segment {
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.pop_if_empty().push(segment);
            }
        }
        Ok(url)
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {}", token.expose())),
            None => request,
        }
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<Value, SendError> {
        let url = self.url(path, None)?;
        let bytes = serde_json::to_vec(body).map_err(|e| SendError::Protocol {
            status: 0,
            body: e.to_string(),
        })?;
        let response = self
            .request(reqwest::Method::POST, url)
            .header(CONTENT_TYPE, "application/json")
            .body(bytes)
            .send()
            .await?;
        answer(response).await
    }

    async fn get_json(&self, path: &str, segment: &str) -> Result<Value, SendError> {
        let url = self.url(path, Some(segment))?;
        let response = self.request(reqwest::Method::GET, url).send().await?;
        answer(response).await
    }
}

/// A 2xx JSON body, or the API's error.
async fn answer(response: reqwest::Response) -> Result<Value, SendError> {
    let status = response.status();
    let text = response.text().await?;
    if status.is_success() {
        return serde_json::from_str(&text).map_err(|_| SendError::Protocol {
            status: status.as_u16(),
            body: text,
        });
    }
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(ErrorBody { error }) => Err(SendError::Refused {
            code: error.code,
            message: error.message,
            details: error.details,
        }),
        Err(_) => Err(SendError::Protocol {
            status: status.as_u16(),
            body: text,
        }),
    }
}

fn protocol(status: StatusCode, value: &Value) -> SendError {
    SendError::Protocol {
        status: status.as_u16(),
        body: value.to_string(),
    }
}

/// The database itself, or a server in front of it.
pub enum Target {
    Direct(Arc<dyn Store>),
    Server(ApiClient),
}

impl Target {
    pub async fn upsert_variants(&self, variants: Vec<Variant>) -> Result<UpsertCounts, SendError> {
        match self {
            Target::Direct(store) => {
                let summary = store.upsert_variants(variants).await?;
                Ok(UpsertCounts {
                    upserted: summary.upserted,
                    replayed: summary.replayed,
                })
            }
            Target::Server(client) => {
                let body = serde_json::to_value(&variants).map_err(|e| SendError::Protocol {
                    status: 0,
                    body: e.to_string(),
                })?;
                let value = client.post_json("v1/variants", &body).await?;
                serde_json::from_value(value.clone()).map_err(|_| protocol(StatusCode::OK, &value))
            }
        }
    }

    /// Submits one atomic request. `raw` holds the events as read (what a
    /// server is sent), `events` the same events validated (what a store takes).
    pub async fn submit(
        &self,
        raw: &[Value],
        events: Vec<Event>,
    ) -> Result<Vec<EventResult>, SendError> {
        match self {
            Target::Direct(store) => {
                let submissions = events.into_iter().map(stockd_store::submission).collect();
                match store.submit(submissions).await? {
                    Ok(results) => Ok(results),
                    Err(RequestError::KeyReused { index, key }) => Err(ApiError::KeyReused {
                        index,
                        key: key.to_string(),
                    }
                    .into()),
                    Err(RequestError::Rejected { index, error }) => {
                        Err(ApiError::EventRefused { index, error }.into())
                    }
                }
            }
            Target::Server(client) => {
                let value = client
                    .post_json("v1/events", &Value::Array(raw.to_vec()))
                    .await?;
                serde_json::from_value::<Vec<EventResult>>(value["results"].clone())
                    .map_err(|_| protocol(StatusCode::OK, &value))
            }
        }
    }

    /// The stock view of one variant as JSON; `None` when the SKU is unknown.
    pub async fn stock(&self, sku: &Sku) -> Result<Option<Value>, SendError> {
        match self {
            Target::Direct(store) => match store.stock(sku).await? {
                Some(view) => Ok(Some(serde_json::to_value(view).map_err(|e| {
                    SendError::Protocol {
                        status: 0,
                        body: e.to_string(),
                    }
                })?)),
                None => Ok(None),
            },
            Target::Server(client) => match client.get_json("v1/stock", sku.as_str()).await {
                Ok(view) => Ok(Some(view)),
                Err(SendError::Refused { code, .. }) if code == "unknown_sku" => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Lets a direct store finish its writes.
    pub async fn close(self) {
        if let Target::Direct(store) = self {
            store.close().await;
        }
    }
}
