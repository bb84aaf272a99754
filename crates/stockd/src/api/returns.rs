//! `/v1/returns`: returns tracked per RMA. `return_received` events open an
//! RMA or add to it, `return_verified` events settle it; an RMA is `open`
//! while some received unit is not verified, `closed` after.

use crate::api::{page_limit, schema, AppState, PathParam, QueryParams};
use crate::auth::{Authorized, Read};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use stockd_core::returns::{ReturnStatus, ReturnView};
use stockd_core::RmaId;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReturnsParams {
    /// `open` or `closed`; absent lists both.
    #[param(pattern = "^(open|closed)$")]
    pub status: Option<String>,
    /// Return RMAs with a larger id (the previous page's `next_after`).
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReturnsPage {
    #[schema(value_type = Vec<schema::ReturnView>)]
    pub items: Vec<ReturnView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/returns",
    tag = "returns",
    params(ReturnsParams),
    responses(
        (status = 200, description = "One page of RMAs in id order.", body = ReturnsPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_returns(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(params): QueryParams<ReturnsParams>,
) -> Result<Json<ReturnsPage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let status =
        match params.status.as_deref() {
            None => None,
            Some(raw) => Some(ReturnStatus::parse(raw).ok_or_else(|| {
                ApiError::InvalidQuery("status: must be open or closed".to_string())
            })?),
        };
    let after = match params.after.filter(|a| !a.is_empty()) {
        None => None,
        Some(raw) => {
            Some(RmaId::parse(raw).map_err(|e| ApiError::InvalidQuery(format!("after: {e}")))?)
        }
    };
    let items = state
        .store
        .returns(status, after.as_ref(), limit)
        .await
        .map_err(ApiError::Storage)?;
    let next_after = if items.len() == limit as usize {
        items.last().map(|r| r.rma_id.to_string())
    } else {
        None
    };
    Ok(Json(ReturnsPage { items, next_after }))
}

#[utoipa::path(
    get,
    path = "/v1/returns/{rma_id}",
    tag = "returns",
    params(("rma_id" = String, Path, description = "The RMA id")),
    responses(
        (status = 200, description = "The RMA: its lines, what was received and what verified.", body = schema::ReturnView),
        (status = 404, description = "`unknown_rma`: nothing of it was received.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_return(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    PathParam(raw): PathParam,
) -> Result<Json<ReturnView>, ApiError> {
    let unknown = || ApiError::NotFound {
        code: "unknown_rma",
        message: format!("no return received under rma {raw:?}"),
    };
    let rma_id = RmaId::parse(raw.clone()).map_err(|_| unknown())?;
    state
        .store
        .return_record(&rma_id)
        .await
        .map_err(ApiError::Storage)?
        .map(Json)
        .ok_or_else(unknown)
}
