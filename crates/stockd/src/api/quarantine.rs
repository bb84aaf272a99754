//! `/v1/quarantine`: events that named an unknown SKU, location or order.
//! They are replayed automatically when what they wait for is created; an
//! operator can list them and discard one for good (freeing its key).

use crate::api::{page_limit, schema, AppState, PathParam, QueryParams};
use crate::auth::{Admin, Authorized, Read};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use stockd_store::QuarantineRow;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuarantineParams {
    /// Return entries with a larger id (the previous page's `next_after_id`).
    pub after_id: Option<i64>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantinePage {
    #[schema(value_type = Vec<schema::QuarantineRow>)]
    pub items: Vec<QuarantineRow>,
    /// Pass as `after_id` for the next page; null on the last page.
    pub next_after_id: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/quarantine",
    tag = "quarantine",
    params(QuarantineParams),
    responses(
        (status = 200, description = "One page of quarantined events in id order.", body = QuarantinePage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_quarantine(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(params): QueryParams<QuarantineParams>,
) -> Result<Json<QuarantinePage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let items = state
        .store
        .quarantine(params.after_id.unwrap_or(0), limit)
        .await
        .map_err(ApiError::Storage)?;
    let next_after_id = if items.len() == limit as usize {
        items.last().map(|row| row.id)
    } else {
        None
    };
    Ok(Json(QuarantinePage {
        items,
        next_after_id,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/quarantine/{id}",
    tag = "quarantine",
    params(("id" = i64, Path, description = "Quarantine entry id")),
    responses(
        (status = 204, description = "Discarded; its idempotency key is free again."),
        (status = 404, description = "`unknown_quarantine_entry`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn discard_quarantined(
    State(state): State<AppState>,
    _caller: Authorized<Admin>,
    PathParam(raw): PathParam,
) -> Result<StatusCode, ApiError> {
    let unknown = || ApiError::NotFound {
        code: "unknown_quarantine_entry",
        message: format!("no quarantined event with id {raw:?}"),
    };
    let id: i64 = raw.parse().map_err(|_| unknown())?;
    if state
        .store
        .discard_quarantined(id)
        .await
        .map_err(ApiError::Storage)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown())
    }
}
