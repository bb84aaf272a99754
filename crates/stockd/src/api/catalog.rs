//! The catalog: locations (`/v1/locations`) and variants (`/v1/variants`).
//! Creating either replays the quarantined events that were waiting for it.

use crate::api::{schema, AppState, JsonBody, PathParam};
use crate::auth::{Admin, Authorized, Ingest, Read};
use crate::error::{ApiError, ErrorBody};
use crate::input::{self, LocationFields, VariantFields, VariantItem};
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use stockd_core::{Location, Variant};
use stockd_store::UpsertSummary;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct LocationUpserted {
    #[schema(value_type = schema::Location)]
    pub location: Location,
    /// Quarantined events replayed and applied because of this location.
    pub replayed: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LocationList {
    #[schema(value_type = Vec<schema::Location>)]
    pub items: Vec<Location>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VariantUpserted {
    #[schema(value_type = schema::Variant)]
    pub variant: Variant,
    /// Quarantined events replayed and applied because of this variant.
    pub replayed: usize,
}

#[utoipa::path(
    put,
    path = "/v1/locations/{id}",
    tag = "catalog",
    params(("id" = String, Path, description = "Location id")),
    request_body = LocationFields,
    responses(
        (status = 200, description = "Created or replaced.", body = LocationUpserted),
        (status = 422, description = "`invalid_location`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_location(
    State(state): State<AppState>,
    _caller: Authorized<Admin>,
    PathParam(id): PathParam,
    JsonBody(body): JsonBody,
) -> Result<Json<LocationUpserted>, ApiError> {
    let location = input::parse_location(&id, &body)?;
    let summary = state
        .store
        .upsert_location(location.clone())
        .await
        .map_err(ApiError::Storage)?;
    Ok(Json(LocationUpserted {
        location,
        replayed: summary.replayed,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/locations",
    tag = "catalog",
    responses((status = 200, description = "All locations.", body = LocationList)),
    security(("bearer" = []))
)]
pub async fn list_locations(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
) -> Result<Json<LocationList>, ApiError> {
    let items = state.store.locations().await.map_err(ApiError::Storage)?;
    Ok(Json(LocationList { items }))
}

#[utoipa::path(
    put,
    path = "/v1/variants/{sku}",
    tag = "catalog",
    params(("sku" = String, Path, description = "SKU")),
    request_body = VariantFields,
    responses(
        (status = 200, description = "Created or replaced.", body = VariantUpserted),
        (status = 422, description = "`invalid_variant` (e.g. a GTIN with a wrong check digit).", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_variant(
    State(state): State<AppState>,
    _caller: Authorized<Ingest>,
    PathParam(sku): PathParam,
    JsonBody(body): JsonBody,
) -> Result<Json<VariantUpserted>, ApiError> {
    let variant = input::parse_variant(&sku, &body)?;
    let summary = state
        .store
        .upsert_variants(vec![variant.clone()])
        .await
        .map_err(ApiError::Storage)?;
    Ok(Json(VariantUpserted {
        variant,
        replayed: summary.replayed,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/variants/{sku}",
    tag = "catalog",
    params(("sku" = String, Path, description = "SKU")),
    responses(
        (status = 200, description = "The variant.", body = schema::Variant),
        (status = 404, description = "`unknown_sku`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_variant(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    PathParam(raw): PathParam,
) -> Result<Json<Variant>, ApiError> {
    let sku = input::parse_sku(&raw).map_err(|_| ApiError::unknown_sku(&raw))?;
    match state.store.variant(&sku).await.map_err(ApiError::Storage)? {
        Some(variant) => Ok(Json(variant)),
        None => Err(ApiError::unknown_sku(&raw)),
    }
}

#[utoipa::path(
    post,
    path = "/v1/variants",
    tag = "catalog",
    request_body(content = Vec<VariantItem>, description = "Up to 10,000 variants with distinct SKUs; all valid or none applied."),
    responses(
        (status = 200, description = "All upserted.", body = schema::UpsertSummary),
        (status = 422, description = "`invalid_variant` (details name index and field) or `too_many_variants`; nothing applied.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_variants(
    State(state): State<AppState>,
    _caller: Authorized<Ingest>,
    JsonBody(body): JsonBody,
) -> Result<Json<UpsertSummary>, ApiError> {
    let variants = input::parse_variant_items(body)?;
    if variants.is_empty() {
        return Ok(Json(UpsertSummary::default()));
    }
    let summary = state
        .store
        .upsert_variants(variants)
        .await
        .map_err(ApiError::Storage)?;
    Ok(Json(summary))
}
