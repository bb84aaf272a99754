//! Channels (`/v1/channels`) and their listings
//! (`/v1/channels/{id}/listings`): which variant is sold where, and what each
//! listing may show, computed at read time (`crate::availability`).

use crate::api::{page_limit, AppState, JsonBody, PathParam, QueryParams};
use crate::auth::{Admin, Authorized, Ingest, Read};
use crate::availability;
use crate::error::{ApiError, ErrorBody, ErrorDetail, FieldProblem};
use crate::input::{self, ChannelFields, ListingItem};
use axum::extract::State;
use axum::Json;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use stockd_core::availability::{Availability, ExplainStep, ListingAvailability};
use stockd_core::{ChannelId, Sku};
use stockd_store::{ChannelRecord, ListingRecord, Store};
use utoipa::{IntoParams, ToSchema};

/// A channel as stored and shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelView {
    #[schema(value_type = String)]
    pub id: ChannelId,
    /// shopify, woocommerce, bol, amazon or gmc.
    #[schema(value_type = String)]
    pub kind: stockd_store::ChannelKind,
    /// Locations whose stock it sells; null = every sellable location.
    #[schema(value_type = Option<Vec<String>>)]
    pub locations: Option<Vec<stockd_core::LocationId>>,
    pub enabled: bool,
}

impl From<ChannelRecord> for ChannelView {
    fn from(c: ChannelRecord) -> ChannelView {
        ChannelView {
            id: c.id,
            kind: c.kind,
            locations: c.locations,
            enabled: c.enabled,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelList {
    pub items: Vec<ChannelView>,
}

/// What a channel may show for a variant, with the steps that produced it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelAvailability {
    #[schema(value_type = String)]
    pub channel: ChannelId,
    pub quantity: i64,
    /// in_stock, out_of_stock or backorder.
    #[schema(value_type = String)]
    pub availability: Availability,
    /// Date of the confirmed delivery a backorder waits for.
    pub eta: Option<NaiveDate>,
    /// Days from today to shipping, [min, max] (backorder only).
    #[schema(value_type = Option<Vec<u32>>)]
    pub ship_window_days: Option<(u32, u32)>,
    /// Each step: pool by location, kit, each rule with its source, pre-allocation, ETA.
    #[schema(value_type = Vec<Object>)]
    pub explain: Vec<ExplainStep>,
}

impl From<ListingAvailability> for ChannelAvailability {
    fn from(a: ListingAvailability) -> ChannelAvailability {
        ChannelAvailability {
            channel: a.channel,
            quantity: a.state.quantity,
            availability: a.state.availability,
            eta: a.state.eta,
            ship_window_days: a.state.ship_window_days,
            explain: a.explain,
        }
    }
}

/// A listing with what it may show (the computed fields are null while its
/// channel is disabled).
#[derive(Debug, Serialize, ToSchema)]
pub struct ListingView {
    #[schema(value_type = String)]
    pub sku: Sku,
    #[schema(value_type = Object)]
    pub external: Map<String, Value>,
    pub rank: Option<i32>,
    pub quantity: Option<i64>,
    #[schema(value_type = Option<String>)]
    pub availability: Option<Availability>,
    pub eta: Option<NaiveDate>,
    #[schema(value_type = Option<Vec<u32>>)]
    pub ship_window_days: Option<(u32, u32)>,
    #[schema(value_type = Vec<Object>)]
    pub explain: Vec<ExplainStep>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListingPage {
    /// The rules version the quantities were computed with; null when no rules were applied yet.
    pub rules_version: Option<u32>,
    pub items: Vec<ListingView>,
    /// Pass as `after` for the next page; null on the last page.
    #[schema(value_type = Option<String>)]
    pub next_after: Option<Sku>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ListingsUpserted {
    pub upserted: usize,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListingQuery {
    /// Return listings whose SKU sorts after this one (the previous page's `next_after`).
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[utoipa::path(
    put,
    path = "/v1/channels/{id}",
    tag = "channels",
    params(("id" = String, Path, description = "Channel id")),
    request_body = ChannelFields,
    responses(
        (status = 200, description = "Created or replaced.", body = ChannelView),
        (status = 422, description = "`invalid_channel` or `unknown_location` (details name the field).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_channel(
    State(state): State<AppState>,
    _caller: Authorized<Admin>,
    PathParam(id): PathParam,
    JsonBody(body): JsonBody,
) -> Result<Json<ChannelView>, ApiError> {
    let channel = input::parse_channel(&id, &body)?;
    if let Some(named) = &channel.locations {
        let known: BTreeSet<_> = state
            .store
            .locations()
            .await
            .map_err(ApiError::Storage)?
            .into_iter()
            .map(|l| l.id)
            .collect();
        let details: Vec<ErrorDetail> = named
            .iter()
            .enumerate()
            .filter(|(_, l)| !known.contains(*l))
            .map(|(i, l)| {
                FieldProblem::new(format!("locations[{i}]"), format!("unknown location {l}")).at(0)
            })
            .collect();
        if !details.is_empty() {
            return Err(ApiError::invalid(
                "unknown_location",
                "the channel names unknown locations",
                details,
            ));
        }
    }
    state
        .store
        .upsert_channel(channel.clone())
        .await
        .map_err(ApiError::Storage)?;
    state
        .store
        .refresh_desired(None)
        .await
        .map_err(ApiError::Storage)?;
    Ok(Json(channel.into()))
}

#[utoipa::path(
    get,
    path = "/v1/channels",
    tag = "channels",
    responses((status = 200, description = "All channels.", body = ChannelList)),
    security(("bearer" = []))
)]
pub async fn list_channels(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
) -> Result<Json<ChannelList>, ApiError> {
    let items = state.store.channels().await.map_err(ApiError::Storage)?;
    Ok(Json(ChannelList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

async fn known_channel(store: &dyn Store, raw: &str) -> Result<ChannelRecord, ApiError> {
    let id = ChannelId::parse(raw).map_err(|_| ApiError::unknown_channel(raw))?;
    store
        .channel(&id)
        .await
        .map_err(ApiError::Storage)?
        .ok_or_else(|| ApiError::unknown_channel(raw))
}

#[utoipa::path(
    get,
    path = "/v1/channels/{id}",
    tag = "channels",
    params(("id" = String, Path, description = "Channel id")),
    responses(
        (status = 200, description = "The channel.", body = ChannelView),
        (status = 404, description = "`unknown_channel`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_channel(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    PathParam(id): PathParam,
) -> Result<Json<ChannelView>, ApiError> {
    Ok(Json(known_channel(&*state.store, &id).await?.into()))
}

/// Stores listings of one channel (all or none): the channel must exist and
/// every SKU must be a known variant. Shared by the API and `stockd import listings`.
pub async fn ingest_listings(
    store: &dyn Store,
    channel: &str,
    listings: Vec<ListingRecord>,
) -> Result<usize, ApiError> {
    known_channel(store, channel).await?;
    if listings.is_empty() {
        return Ok(0);
    }
    let skus: Vec<Sku> = listings.iter().map(|l| l.sku.clone()).collect();
    let known: BTreeSet<Sku> = store
        .known_variants(&skus)
        .await
        .map_err(ApiError::Storage)?
        .into_iter()
        .collect();
    let details: Vec<ErrorDetail> = listings
        .iter()
        .enumerate()
        .filter(|(_, l)| !known.contains(&l.sku))
        .map(|(i, l)| FieldProblem::new("sku", format!("unknown sku {}", l.sku)).at(i))
        .collect();
    if !details.is_empty() {
        return Err(ApiError::invalid(
            "unknown_sku",
            format!(
                "{} listings name unknown skus; nothing was applied",
                details.len()
            ),
            details,
        ));
    }
    let skus: Vec<Sku> = listings.iter().map(|l| l.sku.clone()).collect();
    let written = store
        .upsert_listings(listings)
        .await
        .map_err(ApiError::Storage)?;
    store
        .refresh_desired(Some(skus))
        .await
        .map_err(ApiError::Storage)?;
    Ok(written)
}

#[utoipa::path(
    post,
    path = "/v1/channels/{id}/listings",
    tag = "channels",
    params(("id" = String, Path, description = "Channel id")),
    request_body(content = Vec<ListingItem>, description = "Up to 10,000 listings with distinct SKUs; all valid or none applied."),
    responses(
        (status = 200, description = "All upserted.", body = ListingsUpserted),
        (status = 404, description = "`unknown_channel`.", body = ErrorBody),
        (status = 422, description = "`invalid_listing`, `too_many_listings` or `unknown_sku` (details name index and field); nothing applied.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_listings(
    State(state): State<AppState>,
    _caller: Authorized<Ingest>,
    PathParam(id): PathParam,
    JsonBody(body): JsonBody,
) -> Result<Json<ListingsUpserted>, ApiError> {
    let channel = known_channel(&*state.store, &id).await?;
    let listings = input::parse_listing_items(&channel.id, body)?;
    let upserted = ingest_listings(&*state.store, &id, listings).await?;
    // Order lines kept because they mapped to no listing may map now. A
    // failed replay leaves them kept for the next listing upsert.
    if let Err(e) =
        crate::webhooks::replay_unmapped(&*state.store, &state.listing_index, &channel.id).await
    {
        tracing::warn!(channel = %channel.id, error = %e, "replaying unmapped order lines failed");
    }
    Ok(Json(ListingsUpserted { upserted }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UnmappedQuery {
    /// Return entries with a larger id (the previous page's `next_after_id`).
    pub after_id: Option<i64>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnmappedPage {
    #[schema(value_type = Vec<crate::api::schema::UnmappedRow>)]
    pub items: Vec<stockd_store::unmapped::UnmappedRow>,
    /// Pass as `after_id` for the next page; null on the last page.
    pub next_after_id: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/channels/{id}/unmapped",
    tag = "channels",
    params(("id" = String, Path, description = "Channel id"), UnmappedQuery),
    responses(
        (status = 200, description = "One page of the channel's order changes (or lines) that map to no listing, kept in the order they came; each applies and leaves this list when a listing makes it map.", body = UnmappedPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
        (status = 404, description = "`unknown_channel`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_unmapped(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    PathParam(id): PathParam,
    QueryParams(query): QueryParams<UnmappedQuery>,
) -> Result<Json<UnmappedPage>, ApiError> {
    let limit = page_limit(query.limit)?;
    let channel = known_channel(&*state.store, &id).await?;
    let items = state
        .store
        .unmapped(&channel.id, query.after_id.unwrap_or(0), limit)
        .await
        .map_err(ApiError::Storage)?;
    let next_after_id = if items.len() == limit as usize {
        items.last().map(|row| row.id)
    } else {
        None
    };
    Ok(Json(UnmappedPage {
        items,
        next_after_id,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/channels/{id}/listings",
    tag = "channels",
    params(("id" = String, Path, description = "Channel id"), ListingQuery),
    responses(
        (status = 200, description = "One page of the channel's listings in SKU order, each with what it may show.", body = ListingPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
        (status = 404, description = "`unknown_channel`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_listings(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    PathParam(id): PathParam,
    QueryParams(query): QueryParams<ListingQuery>,
) -> Result<Json<ListingPage>, ApiError> {
    let limit = page_limit(query.limit)?;
    let after = match query.after.as_deref() {
        None | Some("") => None,
        Some(raw) => {
            Some(Sku::parse(raw).map_err(|e| ApiError::InvalidQuery(format!("after: {e}")))?)
        }
    };
    let channel = known_channel(&*state.store, &id).await?;
    let records = state
        .store
        .listings(&channel.id, after.as_ref(), limit)
        .await
        .map_err(ApiError::Storage)?;
    let skus: Vec<Sku> = records.iter().map(|l| l.sku.clone()).collect();
    let (rules_version, mut computed) = availability::compute(&*state.store, &skus, Utc::now())
        .await
        .map_err(ApiError::Storage)?;
    let next_after = if records.len() == limit as usize {
        records.last().map(|l| l.sku.clone())
    } else {
        None
    };
    let items = records
        .into_iter()
        .map(|l| {
            let result = computed.remove(&(l.channel.clone(), l.sku.clone()));
            let (state, explain) = match result {
                Some(r) => (Some(r.state), r.explain),
                None => (None, Vec::new()),
            };
            ListingView {
                sku: l.sku,
                external: l.external,
                rank: l.rank,
                quantity: state.as_ref().map(|s| s.quantity),
                availability: state.as_ref().map(|s| s.availability),
                eta: state.as_ref().and_then(|s| s.eta),
                ship_window_days: state.as_ref().and_then(|s| s.ship_window_days),
                explain,
            }
        })
        .collect();
    Ok(Json(ListingPage {
        rules_version,
        items,
        next_after,
    }))
}
