//! `/v1/orders/{order_id}`: where stockd reserved an order's lines — the
//! pick list a warehouse ships from. A `ship` event settles these rows; with
//! several warehouses it is how the warehouse learns which to pick from.

use crate::api::{AppState, PathParam, QueryParams};
use crate::auth::{Authorized, Read};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use stockd_core::{ChannelId, OrderId, OrderRef, ReservationLine};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderParams {
    /// The channel that sold the order (absent or empty: an order sent
    /// without one, e.g. by an ERP).
    pub channel: Option<String>,
}

/// One reservation row: units of one SKU held at one location for a line.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationRow {
    pub line_id: String,
    /// The SKU held: the variant itself, or a component of the kit the line
    /// ordered (`kit_sku`), in component units.
    pub sku: String,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kit_sku: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_kit_qty: Option<i64>,
    pub ordered_qty: i64,
    pub shipped_qty: i64,
    pub cancelled_qty: i64,
    /// Still reserved: ordered less shipped less cancelled. What a `ship`
    /// of the whole order settles here.
    pub open_qty: i64,
}

impl From<ReservationLine> for ReservationRow {
    fn from(row: ReservationLine) -> Self {
        ReservationRow {
            open_qty: row.open_qty(),
            line_id: row.line_id.to_string(),
            sku: row.sku.to_string(),
            location: row.location.to_string(),
            kit_sku: row.kit.as_ref().map(|k| k.kit_sku.to_string()),
            per_kit_qty: row.kit.as_ref().map(|k| k.per_kit_qty),
            ordered_qty: row.ordered_qty,
            shipped_qty: row.shipped_qty,
            cancelled_qty: row.cancelled_qty,
        }
    }
}

/// An order's reservations, in line and allocation order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub order_id: String,
    /// Units still reserved over all rows (0: shipped or cancelled).
    pub open_qty: i64,
    pub reservations: Vec<ReservationRow>,
}

#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}",
    tag = "orders",
    params(("order_id" = String, Path, description = "The order id"), OrderParams),
    responses(
        (status = 200, description = "Where each line is reserved: the pick list.", body = OrderView),
        (status = 400, description = "`invalid_query`: a malformed channel id.", body = ErrorBody),
        (status = 404, description = "`unknown_order`: no order under this id (and channel).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_order(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    PathParam(raw): PathParam,
    QueryParams(params): QueryParams<OrderParams>,
) -> Result<Json<OrderView>, ApiError> {
    let channel = params
        .channel
        .filter(|c| !c.is_empty())
        .map(|c| ChannelId::parse(c).map_err(|e| ApiError::InvalidQuery(format!("channel: {e}"))))
        .transpose()?;
    let unknown = || ApiError::NotFound {
        code: "unknown_order",
        message: match &channel {
            Some(c) => format!("no order {raw:?} from channel {c}"),
            None => format!("no order {raw:?} without a channel"),
        },
    };
    let order_id = OrderId::parse(raw.clone()).map_err(|_| unknown())?;
    let order = OrderRef {
        channel: channel.clone(),
        order_id,
    };
    let rows = state
        .store
        .order_reservations(&order)
        .await
        .map_err(ApiError::Storage)?;
    if rows.is_empty() {
        return Err(unknown());
    }
    let reservations: Vec<ReservationRow> = rows.into_iter().map(ReservationRow::from).collect();
    Ok(Json(OrderView {
        channel: channel.map(|c| c.to_string()),
        order_id: raw,
        open_qty: reservations.iter().map(|r| r.open_qty).sum(),
        reservations,
    }))
}
