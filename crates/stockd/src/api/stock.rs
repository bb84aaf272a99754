//! Stock views: `GET /v1/stock/{sku}` for one variant (with what each channel
//! listing it may show), `GET /v1/stock` to page through all variants in SKU order.

use crate::api::channels::ChannelAvailability;
use crate::api::{page_limit, schema, AppState, PathParam, QueryParams};
use crate::auth::{Authorized, Read};
use crate::availability;
use crate::error::{ApiError, ErrorBody};
use crate::input;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use stockd_core::{Sku, StockView};
use stockd_store::Store;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StockQuery {
    /// Return variants whose SKU sorts after this one (the previous page's `next_after`).
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StockPage {
    #[schema(value_type = Vec<schema::StockView>)]
    pub items: Vec<StockView>,
    /// Pass as `after` for the next page; null on the last page.
    #[schema(value_type = Option<String>)]
    pub next_after: Option<Sku>,
}

/// The stock of one variant and what every channel listing it may show.
#[derive(Debug, Serialize)]
pub struct StockDetail {
    #[serde(flatten)]
    pub view: StockView,
    /// One entry per enabled channel that lists the variant, by channel id.
    pub channels: Vec<ChannelAvailability>,
}

/// The stock detail of a SKU; `None` when the variant is unknown. Shared by
/// the API and `stockd stock`.
pub async fn stock_detail(store: &dyn Store, sku: &Sku) -> Result<Option<StockDetail>, ApiError> {
    let Some(view) = store.stock(sku).await.map_err(ApiError::Storage)? else {
        return Ok(None);
    };
    let (_, computed) = availability::compute(store, std::slice::from_ref(sku), chrono::Utc::now())
        .await
        .map_err(ApiError::Storage)?;
    let channels = computed.into_values().map(Into::into).collect();
    Ok(Some(StockDetail { view, channels }))
}

#[utoipa::path(
    get,
    path = "/v1/stock/{sku}",
    tag = "stock",
    params(("sku" = String, Path, description = "SKU")),
    responses(
        (status = 200, description = "The stock of the variant and what each channel may show.", body = schema::StockDetail),
        (status = 404, description = "`unknown_sku`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_stock(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    PathParam(raw): PathParam,
) -> Result<Json<StockDetail>, ApiError> {
    let sku = input::parse_sku(&raw).map_err(|_| ApiError::unknown_sku(&raw))?;
    match stock_detail(&*state.store, &sku).await? {
        Some(detail) => Ok(Json(detail)),
        None => Err(ApiError::unknown_sku(&raw)),
    }
}

#[utoipa::path(
    get,
    path = "/v1/stock",
    tag = "stock",
    params(StockQuery),
    responses(
        (status = 200, description = "One page of stock views in SKU order.", body = StockPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_stock(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(query): QueryParams<StockQuery>,
) -> Result<Json<StockPage>, ApiError> {
    let limit = page_limit(query.limit)?;
    let after = match query.after.as_deref() {
        None | Some("") => None,
        Some(raw) => {
            Some(Sku::parse(raw).map_err(|e| ApiError::InvalidQuery(format!("after: {e}")))?)
        }
    };
    let items = state
        .store
        .stock_page(after.as_ref(), limit)
        .await
        .map_err(ApiError::Storage)?;
    let next_after = if items.len() == limit as usize {
        items.last().map(|view| view.sku.clone())
    } else {
        None
    };
    Ok(Json(StockPage { items, next_after }))
}
