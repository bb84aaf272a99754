//! Rules governance (`/v1/rules`): validate, preview, apply as version N+1,
//! list, diff and roll back. The functions taking a `&dyn Store` are shared
//! with `stockd rules …` on a database; the handlers wrap them.
//!
//! Applying computes every listed SKU under the active and the new rules to
//! report what changed; the values themselves are computed at read time
//! (see `crate::availability`).

use crate::api::{AppState, JsonBody, QueryParams};
use crate::auth::{Admin, Authorized, Read};
use crate::availability::{self, RuleSet, Setup};
use crate::error::{ApiError, ErrorBody, FieldProblem};
use crate::input;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use stockd_core::availability::Availability;
use stockd_core::event::TEXT_LEN_MAX;
use stockd_core::rules::{Rules, RulesDocument};
use stockd_core::{ChannelId, Sku};
use stockd_store::{RulesVersion, Store};
use utoipa::{IntoParams, ToSchema};

/// Most changes one preview lists (the summary counts them all).
pub const PREVIEW_CHANGES_MAX: usize = 10_000;

/// Body of `PUT /v1/rules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRulesBody {
    /// The rules document: defaults, channels, overrides, preallocation, eta, change_budget.
    #[schema(value_type = Object)]
    pub rules: Option<Value>,
    /// Why (kept with the version).
    #[schema(required = true, nullable = false, min_length = 1)]
    pub message: Option<String>,
}

/// Body of `POST /v1/rules/preview`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    #[schema(value_type = Object)]
    pub rules: Option<Value>,
}

/// Body of `POST /v1/rules/rollback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version whose document becomes the new version.
    #[schema(required = true, nullable = false, minimum = 1)]
    pub version: Option<u32>,
    #[schema(required = true, nullable = false, min_length = 1)]
    pub message: Option<String>,
}

/// A rules version with its document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub version: u32,
    #[schema(value_type = Object)]
    pub rules: RulesDocument,
    pub message: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

impl From<RulesVersion> for VersionView {
    fn from(v: RulesVersion) -> VersionView {
        VersionView {
            version: v.version,
            rules: v.document,
            message: v.message,
            author: v.author,
            created_at: v.created_at,
        }
    }
}

/// A rules version without its document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    pub version: u32,
    pub message: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    /// Oldest first; the last one is active.
    pub items: Vec<VersionInfo>,
}

/// How many listings a rules change moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChangeSummary {
    /// Listings compared.
    pub listings: usize,
    /// Listings whose quantity or availability changes.
    pub changed: usize,
    pub increased: usize,
    pub decreased: usize,
}

/// What a listing shows, briefly.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Shown {
    pub quantity: i64,
    #[schema(value_type = String)]
    pub availability: Availability,
}

/// One listing that a rules change moves.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListingChange {
    #[schema(value_type = String)]
    pub channel: ChannelId,
    #[schema(value_type = String)]
    pub sku: Sku,
    pub from: Shown,
    pub to: Shown,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    /// The active version compared against (null: none, i.e. the empty document).
    pub active_version: Option<u32>,
    /// In channel, sku order; at most 10,000 (the summary counts all).
    pub changes: Vec<ListingChange>,
    pub summary: ChangeSummary,
}

/// The answer to applying rules (or rolling back).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Applied {
    pub version: u32,
    pub message: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
    /// Listings moved compared with the previous version.
    pub summary: ChangeSummary,
}

/// One changed value between two documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiffEntry {
    /// e.g. `channels.bol.percent`, `overrides[0].set.max_exposed`.
    pub path: String,
    /// Null when absent in `from`.
    #[schema(value_type = Object)]
    pub from: Value,
    /// Null when absent in `to`.
    #[schema(value_type = Object)]
    pub to: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Diff {
    pub from: u32,
    pub to: u32,
    pub changes: Vec<DiffEntry>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// Version to compare from (0 = the empty document).
    pub from: u32,
    /// Version to compare to (0 = the empty document).
    pub to: u32,
}

// ---------------------------------------------------------------------------
// Shared operations.

fn invalid_request(problems: Vec<FieldProblem>) -> ApiError {
    let details = problems.into_iter().map(|p| p.at(0)).collect();
    ApiError::invalid("invalid_request", "the request is invalid", details)
}

fn decode_body<T: for<'de> Deserialize<'de>>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|e| {
        invalid_request(vec![FieldProblem {
            field: None,
            message: e.to_string(),
        }])
    })
}

fn check_message(message: Option<String>) -> Result<String, ApiError> {
    match message {
        None => Err(invalid_request(vec![FieldProblem::new(
            "message",
            "is required",
        )])),
        Some(m) if m.trim().is_empty() => Err(invalid_request(vec![FieldProblem::new(
            "message",
            "must not be empty",
        )])),
        Some(m) if m.chars().count() > TEXT_LEN_MAX => {
            Err(invalid_request(vec![FieldProblem::new(
                "message",
                format!("must be at most {TEXT_LEN_MAX} characters"),
            )]))
        }
        Some(m) => Ok(m),
    }
}

fn rules_value(rules: Option<Value>) -> Result<RulesDocument, ApiError> {
    let value =
        rules.ok_or_else(|| invalid_request(vec![FieldProblem::new("rules", "is required")]))?;
    input::parse_rules_document(&value).map_err(|errors| input::invalid_rules(&errors))
}

/// Validates a document against every known channel.
pub fn validate(setup: &Setup, doc: &RulesDocument) -> Result<Rules, ApiError> {
    doc.validate(&setup.known_channels)
        .map_err(|errors| input::invalid_rules(&errors))
}

/// Compares every listing under the active rules and `next`.
async fn compare(
    store: &dyn Store,
    setup: Setup,
    next: RuleSet,
    now: DateTime<Utc>,
    keep_changes: bool,
) -> Result<(Option<u32>, ChangeSummary, Vec<ListingChange>), ApiError> {
    let active = availability::active_rules(store, &setup)
        .await
        .map_err(ApiError::Storage)?;
    let mut summary = ChangeSummary::default();
    let mut changes = Vec::new();
    let setup = Arc::new(setup);
    let version = active.version;
    availability::compare_all(store, setup, active, next, now, |old, new| {
        for (key, to) in new {
            summary.listings += 1;
            let Some(from) = old.get(key) else { continue };
            let (a, b) = (&from.state, &to.state);
            if a.quantity == b.quantity && a.availability == b.availability {
                continue;
            }
            summary.changed += 1;
            if b.quantity > a.quantity {
                summary.increased += 1;
            } else if b.quantity < a.quantity {
                summary.decreased += 1;
            }
            if keep_changes && changes.len() < PREVIEW_CHANGES_MAX {
                changes.push(ListingChange {
                    channel: key.0.clone(),
                    sku: key.1.clone(),
                    from: Shown {
                        quantity: a.quantity,
                        availability: a.availability,
                    },
                    to: Shown {
                        quantity: b.quantity,
                        availability: b.availability,
                    },
                });
            }
        }
    })
    .await
    .map_err(ApiError::Storage)?;
    Ok((version, summary, changes))
}

/// What applying `doc` would change; changes nothing.
pub async fn preview(
    store: &dyn Store,
    doc: &RulesDocument,
    now: DateTime<Utc>,
) -> Result<Preview, ApiError> {
    let setup = Setup::load(store).await.map_err(ApiError::Storage)?;
    let rules = validate(&setup, doc)?;
    let next = RuleSet {
        rules,
        version: None,
    };
    let (active_version, summary, changes) = compare(store, setup, next, now, true).await?;
    Ok(Preview {
        active_version,
        changes,
        summary,
    })
}

/// Stores `doc` as the next version (after validating it) and reports what it moved.
pub async fn apply(
    store: &dyn Store,
    doc: RulesDocument,
    message: String,
    author: String,
    now: DateTime<Utc>,
) -> Result<Applied, ApiError> {
    let setup = Setup::load(store).await.map_err(ApiError::Storage)?;
    let rules = validate(&setup, &doc)?;
    let next = RuleSet {
        rules,
        version: None,
    };
    let (_, summary, _) = compare(store, setup, next, now, false).await?;
    let stored = store
        .add_rules_version(doc, message, author)
        .await
        .map_err(ApiError::Storage)?;
    // Every listing's desired state now comes from the new version.
    store
        .refresh_desired(None)
        .await
        .map_err(ApiError::Storage)?;
    Ok(Applied {
        version: stored.version,
        message: stored.message,
        author: stored.author,
        created_at: stored.created_at,
        summary,
    })
}

fn unknown_version(version: u32) -> ApiError {
    ApiError::not_found(
        "unknown_rules_version",
        format!("there is no rules version {version}"),
    )
}

/// A new version with the document of `version`.
pub async fn rollback(
    store: &dyn Store,
    version: u32,
    message: String,
    author: String,
    now: DateTime<Utc>,
) -> Result<Applied, ApiError> {
    let old = store
        .rules_version(version)
        .await
        .map_err(ApiError::Storage)?
        .ok_or_else(|| unknown_version(version))?;
    apply(store, old.document, message, author, now).await
}

async fn document(store: &dyn Store, version: u32) -> Result<RulesDocument, ApiError> {
    if version == 0 {
        return Ok(RulesDocument::default());
    }
    store
        .rules_version(version)
        .await
        .map_err(ApiError::Storage)?
        .map(|v| v.document)
        .ok_or_else(|| unknown_version(version))
}

/// The structural difference of two versions (0 = the empty document).
pub async fn diff(store: &dyn Store, from: u32, to: u32) -> Result<Diff, ApiError> {
    let a = document(store, from).await?;
    let b = document(store, to).await?;
    let to_value = |d: &RulesDocument| {
        serde_json::to_value(d)
            .map_err(|e| ApiError::Storage(stockd_store::StoreError::Corrupt(e.to_string())))
    };
    let mut changes = Vec::new();
    diff_values("", &to_value(&a)?, &to_value(&b)?, &mut changes);
    Ok(Diff { from, to, changes })
}

/// Every version, oldest first, without documents.
pub async fn history(store: &dyn Store) -> Result<VersionList, ApiError> {
    let items = store
        .rules_versions()
        .await
        .map_err(ApiError::Storage)?
        .into_iter()
        .map(|v| VersionInfo {
            version: v.version,
            message: v.message,
            author: v.author,
            created_at: v.created_at,
        })
        .collect();
    Ok(VersionList { items })
}

/// Compares two JSON values: objects key by key, arrays index by index,
/// anything else as a whole. Absent and null are the same.
pub fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<DiffEntry>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let null = Value::Null;
                diff_values(
                    &join(key),
                    x.get(key).unwrap_or(&null),
                    y.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let null = Value::Null;
                diff_values(
                    &format!("{path}[{i}]"),
                    x.get(i).unwrap_or(&null),
                    y.get(i).unwrap_or(&null),
                    out,
                );
            }
        }
        // An empty container and an absent one say the same.
        (Value::Null, Value::Object(y)) if y.is_empty() => {}
        (Value::Object(x), Value::Null) if x.is_empty() => {}
        (Value::Null, Value::Array(y)) if y.is_empty() => {}
        (Value::Array(x), Value::Null) if x.is_empty() => {}
        (Value::Null, Value::Object(y)) => diff_values(
            path,
            &Value::Object(Default::default()),
            &Value::Object(y.clone()),
            out,
        ),
        (Value::Object(x), Value::Null) => diff_values(
            path,
            &Value::Object(x.clone()),
            &Value::Object(Default::default()),
            out,
        ),
        _ if a == b => {}
        _ => out.push(DiffEntry {
            path: path.to_string(),
            from: a.clone(),
            to: b.clone(),
        }),
    }
}

// ---------------------------------------------------------------------------
// Handlers.

#[utoipa::path(
    put,
    path = "/v1/rules",
    tag = "rules",
    request_body = PutRulesBody,
    responses(
        (status = 200, description = "Stored as the next version, with how many listings it moved.", body = Applied),
        (status = 422, description = "`invalid_rules` (details `[{field, code, message}]`) or `invalid_request`; nothing changed.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_rules(
    State(state): State<AppState>,
    caller: Authorized<Admin>,
    JsonBody(body): JsonBody,
) -> Result<Json<Applied>, ApiError> {
    let body: PutRulesBody = decode_body(body)?;
    let message = check_message(body.message)?;
    let doc = rules_value(body.rules)?;
    let applied = apply(&*state.store, doc, message, caller.caller, Utc::now()).await?;
    Ok(Json(applied))
}

#[utoipa::path(
    get,
    path = "/v1/rules",
    tag = "rules",
    responses(
        (status = 200, description = "The active version.", body = VersionView),
        (status = 404, description = "`no_rules`: no version yet (every channel sees its whole pool).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_rules(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
) -> Result<Json<VersionView>, ApiError> {
    match state
        .store
        .active_rules()
        .await
        .map_err(ApiError::Storage)?
    {
        Some(v) => Ok(Json(v.into())),
        None => Err(ApiError::not_found(
            "no_rules",
            "no rules version exists yet; every channel sees its whole pool",
        )),
    }
}

#[utoipa::path(
    get,
    path = "/v1/rules/versions",
    tag = "rules",
    responses((status = 200, description = "Every version, oldest first, without documents.", body = VersionList)),
    security(("bearer" = []))
)]
pub async fn list_versions(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
) -> Result<Json<VersionList>, ApiError> {
    Ok(Json(history(&*state.store).await?))
}

#[utoipa::path(
    get,
    path = "/v1/rules/versions/{n}",
    tag = "rules",
    params(("n" = u32, Path, description = "Version number")),
    responses(
        (status = 200, description = "The version with its document.", body = VersionView),
        (status = 404, description = "`unknown_rules_version`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_version(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    path: Result<Path<u32>, axum::extract::rejection::PathRejection>,
) -> Result<Json<VersionView>, ApiError> {
    let Path(n) = path.map_err(|e| ApiError::InvalidPath(e.body_text()))?;
    match state
        .store
        .rules_version(n)
        .await
        .map_err(ApiError::Storage)?
    {
        Some(v) => Ok(Json(v.into())),
        None => Err(unknown_version(n)),
    }
}

#[utoipa::path(
    get,
    path = "/v1/rules/diff",
    tag = "rules",
    params(DiffQuery),
    responses(
        (status = 200, description = "Every value that differs, by path.", body = Diff),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
        (status = 404, description = "`unknown_rules_version`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_diff(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(query): QueryParams<DiffQuery>,
) -> Result<Json<Diff>, ApiError> {
    Ok(Json(diff(&*state.store, query.from, query.to).await?))
}

#[utoipa::path(
    post,
    path = "/v1/rules/preview",
    tag = "rules",
    request_body = PreviewBody,
    responses(
        (status = 200, description = "Which listings would change, from → to, and a summary; nothing is changed.", body = Preview),
        (status = 422, description = "`invalid_rules` or `invalid_request`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_preview(
    State(state): State<AppState>,
    _caller: Authorized<Admin>,
    JsonBody(body): JsonBody,
) -> Result<Json<Preview>, ApiError> {
    let body: PreviewBody = decode_body(body)?;
    let doc = rules_value(body.rules)?;
    Ok(Json(preview(&*state.store, &doc, Utc::now()).await?))
}

#[utoipa::path(
    post,
    path = "/v1/rules/rollback",
    tag = "rules",
    request_body = RollbackBody,
    responses(
        (status = 200, description = "A new version with the old version's document.", body = Applied),
        (status = 404, description = "`unknown_rules_version`.", body = ErrorBody),
        (status = 422, description = "`invalid_request`, or `invalid_rules` when the old document no longer validates.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_rollback(
    State(state): State<AppState>,
    caller: Authorized<Admin>,
    JsonBody(body): JsonBody,
) -> Result<Json<Applied>, ApiError> {
    let body: RollbackBody = decode_body(body)?;
    let message = check_message(body.message)?;
    let version = body
        .version
        .ok_or_else(|| invalid_request(vec![FieldProblem::new("version", "is required")]))?;
    let applied = rollback(&*state.store, version, message, caller.caller, Utc::now()).await?;
    Ok(Json(applied))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_walks_objects_and_arrays() {
        let mut out = Vec::new();
        diff_values(
            "",
            &json!({"defaults": {"percent": 80}, "channels": {"bol": {"percent": 80}}, "overrides": []}),
            &json!({"defaults": {"percent": 80}, "channels": {"bol": {"percent": 50}, "shop": {"max_exposed": 3}},
                    "overrides": [{"match": {"sku": "A"}}]}),
            &mut out,
        );
        let got: Vec<(String, Value, Value)> =
            out.into_iter().map(|d| (d.path, d.from, d.to)).collect();
        assert_eq!(
            got,
            vec![
                ("channels.bol.percent".into(), json!(80), json!(50)),
                ("channels.shop.max_exposed".into(), Value::Null, json!(3)),
                ("overrides[0].match.sku".into(), Value::Null, json!("A")),
            ]
        );
    }
}
