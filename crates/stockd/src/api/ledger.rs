//! `GET /v1/ledger`: the audit trail, every applied event in sequence order
//! with the quantity changes it made.

use crate::api::{page_limit, schema, AppState, QueryParams};
use crate::auth::{Authorized, Read};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use stockd_core::Sku;
use stockd_store::{LedgerQuery, LedgerRow};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LedgerParams {
    /// Only events that changed this variant's stock.
    pub sku: Option<String>,
    /// Return events with a larger sequence number (the previous page's `next_after_seq`).
    pub after_seq: Option<u64>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerPage {
    #[schema(value_type = Vec<schema::LedgerRow>)]
    pub items: Vec<LedgerRow>,
    /// Pass as `after_seq` for the next page; null on the last page.
    pub next_after_seq: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/ledger",
    tag = "ledger",
    params(LedgerParams),
    responses(
        (status = 200, description = "One page of the audit trail in sequence order.", body = LedgerPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_ledger(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(params): QueryParams<LedgerParams>,
) -> Result<Json<LedgerPage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let sku = match params.sku.as_deref() {
        None | Some("") => None,
        Some(raw) => {
            Some(Sku::parse(raw).map_err(|e| ApiError::InvalidQuery(format!("sku: {e}")))?)
        }
    };
    let query = LedgerQuery {
        sku,
        after_seq: params.after_seq.unwrap_or(0),
        limit,
    };
    let items = state
        .store
        .ledger(&query)
        .await
        .map_err(ApiError::Storage)?;
    let next_after_seq = if items.len() == limit as usize {
        items.last().map(|row| row.seq)
    } else {
        None
    };
    Ok(Json(LedgerPage {
        items,
        next_after_seq,
    }))
}
