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
use stockd_core::rules::RulesDocument;
use stockd_core::{ChannelId, Event, EventResult, RequestError, Sku, Variant};
use stockd_store::{ListingRecord, Store, StoreError};

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

    /// Sends `body` (if any) as JSON to `base` + the percent-encoded
    /// `segments` + `query`.
    async fn call(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, SendError> {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut request = self.request(method, url);
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body).map_err(|e| SendError::Protocol {
                status: 0,
                body: e.to_string(),
            })?;
            request = request.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        answer(request.send().await?).await
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

    /// The stock view of one variant (with its channels) as JSON; `None` when the SKU is unknown.
    pub async fn stock(&self, sku: &Sku) -> Result<Option<Value>, SendError> {
        match self {
            Target::Direct(store) => match crate::api::stock::stock_detail(&**store, sku).await? {
                Some(view) => Ok(Some(to_json(&view)?)),
                None => Ok(None),
            },
            Target::Server(client) => match client.get_json("v1/stock", sku.as_str()).await {
                Ok(view) => Ok(Some(view)),
                Err(SendError::Refused { code, .. }) if code == "unknown_sku" => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Upserts listings of one channel (atomically).
    pub async fn upsert_listings(
        &self,
        channel: &str,
        listings: Vec<ListingRecord>,
    ) -> Result<usize, SendError> {
        match self {
            Target::Direct(store) => {
                Ok(crate::api::channels::ingest_listings(&**store, channel, listings).await?)
            }
            Target::Server(client) => {
                let items: Vec<Value> = listings
                    .into_iter()
                    .map(|l| {
                        serde_json::json!({"sku": l.sku, "external": l.external, "rank": l.rank})
                    })
                    .collect();
                let value = client
                    .call(
                        reqwest::Method::POST,
                        &["v1", "channels", channel, "listings"],
                        &[],
                        Some(&Value::Array(items)),
                    )
                    .await?;
                value["upserted"]
                    .as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| protocol(StatusCode::OK, &value))
            }
        }
    }

    /// Every channel id (what a rules document may name).
    pub async fn channel_ids(&self) -> Result<Vec<ChannelId>, SendError> {
        match self {
            Target::Direct(store) => {
                Ok(store.channels().await?.into_iter().map(|c| c.id).collect())
            }
            Target::Server(client) => {
                let value = client
                    .call(reqwest::Method::GET, &["v1", "channels"], &[], None)
                    .await?;
                let ids = value["items"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|c| c["id"].as_str())
                            .filter_map(|id| ChannelId::parse(id).ok())
                            .collect()
                    })
                    .ok_or_else(|| protocol(StatusCode::OK, &value))?;
                Ok(ids)
            }
        }
    }

    /// One rules operation; the answer is the API's JSON either way.
    pub async fn rules(&self, op: RulesOp) -> Result<Value, SendError> {
        use crate::api::rules;
        use reqwest::Method;
        let now = chrono::Utc::now();
        match self {
            Target::Direct(store) => {
                let store = &**store;
                let author = cli_author();
                match op {
                    RulesOp::Preview(doc) => to_json(&rules::preview(store, &doc, now).await?),
                    RulesOp::Apply(doc, message) => {
                        to_json(&rules::apply(store, doc, message, author, now).await?)
                    }
                    RulesOp::Rollback(version, message) => {
                        to_json(&rules::rollback(store, version, message, author, now).await?)
                    }
                    RulesOp::Diff(from, to) => to_json(&rules::diff(store, from, to).await?),
                    RulesOp::History => to_json(&rules::history(store).await?),
                }
            }
            Target::Server(client) => match op {
                RulesOp::Preview(doc) => {
                    let body = serde_json::json!({"rules": doc});
                    client
                        .call(Method::POST, &["v1", "rules", "preview"], &[], Some(&body))
                        .await
                }
                RulesOp::Apply(doc, message) => {
                    let body = serde_json::json!({"rules": doc, "message": message});
                    client
                        .call(Method::PUT, &["v1", "rules"], &[], Some(&body))
                        .await
                }
                RulesOp::Rollback(version, message) => {
                    let body = serde_json::json!({"version": version, "message": message});
                    client
                        .call(Method::POST, &["v1", "rules", "rollback"], &[], Some(&body))
                        .await
                }
                RulesOp::Diff(from, to) => {
                    let query = [("from", from.to_string()), ("to", to.to_string())];
                    client
                        .call(Method::GET, &["v1", "rules", "diff"], &query, None)
                        .await
                }
                RulesOp::History => {
                    client
                        .call(Method::GET, &["v1", "rules", "versions"], &[], None)
                        .await
                }
            },
        }
    }

    /// `stockd dlq …`: list, retry or discard dead letters.
    pub async fn dlq(&self, op: DlqOp) -> Result<Value, SendError> {
        use reqwest::Method;
        let unknown = |id: i64| SendError::Refused {
            code: "unknown_dead_letter".into(),
            message: format!("no dead letter with id {id}"),
            details: Vec::new(),
        };
        match self {
            Target::Direct(store) => match op {
                DlqOp::List => {
                    let mut all = Vec::new();
                    let mut after = 0;
                    loop {
                        let page = store.dead_letters(after, 1_000).await?;
                        let full = page.len() == 1_000;
                        after = page.last().map_or(after, |l| l.id);
                        all.extend(page);
                        if !full {
                            break;
                        }
                    }
                    to_json(&serde_json::json!({"items": all}))
                }
                DlqOp::Retry(id) => match store.dead_letter_retry(id).await? {
                    true => Ok(serde_json::json!({"retried": id})),
                    false => Err(unknown(id)),
                },
                DlqOp::Discard(id) => match store.dead_letter_discard(id).await? {
                    true => Ok(serde_json::json!({"discarded": id})),
                    false => Err(unknown(id)),
                },
            },
            Target::Server(client) => match op {
                DlqOp::List => {
                    let query = [("limit", "1000".to_string())];
                    client.call(Method::GET, &["v1", "dlq"], &query, None).await
                }
                DlqOp::Retry(id) => {
                    let id_text = id.to_string();
                    client
                        .call(Method::POST, &["v1", "dlq", &id_text, "retry"], &[], None)
                        .await?;
                    Ok(serde_json::json!({"retried": id}))
                }
                DlqOp::Discard(id) => {
                    let id_text = id.to_string();
                    client
                        .call(Method::DELETE, &["v1", "dlq", &id_text], &[], None)
                        .await?;
                    Ok(serde_json::json!({"discarded": id}))
                }
            },
        }
    }

    /// `stockd reconcile`: queues a run per channel (or of every channel).
    /// Directly on the database the run is queued for the server to take.
    pub async fn reconcile_start(&self, channel: Option<&ChannelId>) -> Result<Value, SendError> {
        match self {
            Target::Direct(store) => {
                let channels: Vec<ChannelId> = match channel {
                    Some(c) => vec![c.clone()],
                    None => store.channels().await?.into_iter().map(|c| c.id).collect(),
                };
                let open = store.recon_open().await?;
                let mut runs = Vec::new();
                for channel in channels {
                    let run = match open.iter().find(|r| r.channel == channel) {
                        Some(run) => run.clone(),
                        None => {
                            store
                                .recon_create(&channel, "cli", true, chrono::Utc::now())
                                .await?
                        }
                    };
                    runs.push(crate::outbound::reconcile::RunView::from(&run));
                }
                to_json(&serde_json::json!({"runs": runs}))
            }
            Target::Server(client) => {
                let body = match channel {
                    Some(c) => serde_json::json!({"channel": c.as_str()}),
                    None => serde_json::json!({}),
                };
                client
                    .call(
                        reqwest::Method::POST,
                        &["v1", "reconciliations"],
                        &[],
                        Some(&body),
                    )
                    .await
            }
        }
    }

    /// One reconciliation run as the API shows it; `None` when unknown.
    pub async fn reconcile_run(&self, id: i64) -> Result<Option<Value>, SendError> {
        match self {
            Target::Direct(store) => match store.recon_run(id).await? {
                Some(run) => Ok(Some(to_json(&crate::outbound::reconcile::RunView::from(
                    &run,
                ))?)),
                None => Ok(None),
            },
            Target::Server(client) => {
                let id_text = id.to_string();
                match client
                    .call(
                        reqwest::Method::GET,
                        &["v1", "reconciliations", &id_text],
                        &[],
                        None,
                    )
                    .await
                {
                    Ok(v) => Ok(Some(v)),
                    Err(SendError::Refused { code, .. }) if code == "unknown_reconciliation" => {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Lets a direct store finish its writes.
    pub async fn close(self) {
        if let Target::Direct(store) = self {
            store.close().await;
        }
    }
}

/// A dead-letter operation of `stockd dlq …`.
pub enum DlqOp {
    List,
    Retry(i64),
    Discard(i64),
}

/// A rules operation of `stockd rules …`.
pub enum RulesOp {
    Preview(RulesDocument),
    Apply(RulesDocument, String),
    Rollback(u32, String),
    Diff(u32, u32),
    History,
}

/// The author of a version applied from the command line on a database.
fn cli_author() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".to_string(),
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, SendError> {
    serde_json::to_value(value).map_err(|e| SendError::Protocol {
        status: 0,
        body: e.to_string(),
    })
}
