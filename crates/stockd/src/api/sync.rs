//! The sync pipeline's operator views: `/v1/outbox` (what each listing
//! should show, what the channel last acknowledged, attempts and errors),
//! `/v1/dlq` (updates the channel refused for good or that ran out of
//! attempts: inspect, retry, discard) and `/v1/kpis` (update latency and
//! delivery figures per channel).

use crate::api::{page_limit, AppState, PathParam, QueryParams};
use crate::auth::{Admin, Authorized, Read};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use stockd_core::{ChannelId, Sku};
use stockd_store::outbox::{DeadLetter, OutboxRow};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutboxParams {
    /// Only this channel.
    pub channel: Option<String>,
    /// Only listings the channel lags on or that are dead-lettered (default true).
    pub pending: Option<bool>,
    /// Continue after this `channel/sku` (the previous page's `next_after`).
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxPage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<OutboxRow>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<String>,
}

fn bad_query(message: impl Into<String>) -> ApiError {
    ApiError::InvalidQuery(message.into())
}

#[utoipa::path(
    get,
    path = "/v1/outbox",
    tag = "sync",
    params(OutboxParams),
    responses(
        (status = 200, description = "Listings' desired and acknowledged states, attempts, next attempt and last error.", body = OutboxPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_outbox(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(params): QueryParams<OutboxParams>,
) -> Result<Json<OutboxPage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let channel = params
        .channel
        .map(|c| ChannelId::parse(c).map_err(|e| bad_query(format!("channel: {e}"))))
        .transpose()?;
    let after = params
        .after
        .map(|raw| {
            let (c, s) = raw
                .split_once('/')
                .ok_or_else(|| bad_query("after: expected CHANNEL/SKU"))?;
            Ok::<_, ApiError>((
                ChannelId::parse(c.to_string()).map_err(|e| bad_query(format!("after: {e}")))?,
                Sku::parse(s.to_string()).map_err(|e| bad_query(format!("after: {e}")))?,
            ))
        })
        .transpose()?;
    let items = state
        .store
        .outbox(
            channel.as_ref(),
            after.as_ref().map(|(c, s)| (c, s)),
            params.pending.unwrap_or(true),
            limit,
        )
        .await
        .map_err(ApiError::Storage)?;
    let next_after = if items.len() == limit as usize {
        items.last().map(|r| format!("{}/{}", r.channel, r.sku))
    } else {
        None
    };
    Ok(Json(OutboxPage { items, next_after }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DlqParams {
    /// Return letters with a larger id (the previous page's `next_after_id`).
    pub after_id: Option<i64>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DlqPage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<DeadLetter>,
    pub next_after_id: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/dlq",
    tag = "sync",
    params(DlqParams),
    responses(
        (status = 200, description = "Dead letters with the channel's status and body.", body = DlqPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_dlq(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(params): QueryParams<DlqParams>,
) -> Result<Json<DlqPage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let items = state
        .store
        .dead_letters(params.after_id.unwrap_or(0), limit)
        .await
        .map_err(ApiError::Storage)?;
    let next_after_id = if items.len() == limit as usize {
        items.last().map(|l| l.id)
    } else {
        None
    };
    Ok(Json(DlqPage {
        items,
        next_after_id,
    }))
}

fn unknown_letter(raw: &str) -> ApiError {
    ApiError::not_found(
        "unknown_dead_letter",
        format!("no dead letter with id {raw:?}"),
    )
}

#[utoipa::path(
    post,
    path = "/v1/dlq/{id}/retry",
    tag = "sync",
    params(("id" = i64, Path, description = "Dead letter id")),
    responses(
        (status = 204, description = "The listing's latest desired state is queued again."),
        (status = 404, description = "`unknown_dead_letter`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn retry_dead_letter(
    State(state): State<AppState>,
    _caller: Authorized<Admin>,
    PathParam(raw): PathParam,
) -> Result<StatusCode, ApiError> {
    let id: i64 = raw.parse().map_err(|_| unknown_letter(&raw))?;
    if state
        .store
        .dead_letter_retry(id)
        .await
        .map_err(ApiError::Storage)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_letter(&raw))
    }
}

#[utoipa::path(
    delete,
    path = "/v1/dlq/{id}",
    tag = "sync",
    params(("id" = i64, Path, description = "Dead letter id")),
    responses(
        (status = 204, description = "Discarded: the update is given up until the listing changes again."),
        (status = 404, description = "`unknown_dead_letter`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn discard_dead_letter(
    State(state): State<AppState>,
    _caller: Authorized<Admin>,
    PathParam(raw): PathParam,
) -> Result<StatusCode, ApiError> {
    let id: i64 = raw.parse().map_err(|_| unknown_letter(&raw))?;
    if state
        .store
        .dead_letter_discard(id)
        .await
        .map_err(ApiError::Storage)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown_letter(&raw))
    }
}
