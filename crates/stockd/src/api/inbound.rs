//! `/v1/inbound/rejected`: bus messages that can never apply (malformed, an
//! invalid event, a key reused with another payload, an event the ledger
//! refuses). They were terminated on the bus and are kept here with their
//! reason, subject, stream sequence and body until an operator discards them.

use crate::api::{page_limit, AppState, PathParam, QueryParams};
use crate::auth::{Admin, Authorized, Read};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use stockd_store::inbound::RejectedRow;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RejectedParams {
    /// Return entries with a larger id (the previous page's `next_after_id`).
    pub after_id: Option<i64>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

/// One rejected message.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedItem {
    pub id: i64,
    /// `nats`.
    pub source: String,
    pub stream: String,
    pub stream_seq: u64,
    pub subject: String,
    /// Stable code: `malformed_json`, `invalid_event`, `too_many_events`,
    /// `idempotency_key_reused` or the ledger's refusal code.
    pub code: String,
    pub reason: String,
    /// The message body as received.
    pub body: String,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

impl From<RejectedRow> for RejectedItem {
    fn from(row: RejectedRow) -> Self {
        let m = row.message;
        RejectedItem {
            id: row.id,
            source: m.source,
            stream: m.stream,
            stream_seq: m.stream_seq,
            subject: m.subject,
            code: m.code,
            reason: m.reason,
            body: m.body,
            received_at: m.received_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedPage {
    pub items: Vec<RejectedItem>,
    /// Pass as `after_id` for the next page; null on the last page.
    pub next_after_id: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/inbound/rejected",
    tag = "inbound",
    params(RejectedParams),
    responses(
        (status = 200, description = "One page of rejected bus messages in id order.", body = RejectedPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_rejected(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(params): QueryParams<RejectedParams>,
) -> Result<Json<RejectedPage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let rows = state
        .store
        .rejected(params.after_id.unwrap_or(0), limit)
        .await
        .map_err(ApiError::Storage)?;
    let next_after_id = if rows.len() == limit as usize {
        rows.last().map(|row| row.id)
    } else {
        None
    };
    Ok(Json(RejectedPage {
        items: rows.into_iter().map(RejectedItem::from).collect(),
        next_after_id,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/inbound/rejected/{id}",
    tag = "inbound",
    params(("id" = i64, Path, description = "Rejected message id")),
    responses(
        (status = 204, description = "Discarded."),
        (status = 404, description = "`unknown_rejected_message`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn discard_rejected(
    State(state): State<AppState>,
    _caller: Authorized<Admin>,
    PathParam(raw): PathParam,
) -> Result<StatusCode, ApiError> {
    let unknown = || ApiError::NotFound {
        code: "unknown_rejected_message",
        message: format!("no rejected message with id {raw:?}"),
    };
    let id: i64 = raw.parse().map_err(|_| unknown())?;
    if state
        .store
        .discard_rejected(id)
        .await
        .map_err(ApiError::Storage)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown())
    }
}
