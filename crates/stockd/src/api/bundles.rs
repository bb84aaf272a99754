//! Kits (`/v1/bundles`): a variant made of other variants. Every change is
//! checked against the whole set of definitions, so cycles never get stored,
//! and recorded with its author (`/v1/kit-changes`).

use crate::api::{page_limit, AppState, JsonBody, PathParam, QueryParams};
use crate::auth::{Admin, Authorized, Read};
use crate::error::{ApiError, ErrorBody, ErrorDetail, FieldProblem};
use crate::input;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use stockd_core::availability::{validate_bundles, Bundle, BundleComponent};
use stockd_core::Sku;
use stockd_store::KitChange;
use utoipa::{IntoParams, ToSchema};

/// Body of `PUT /v1/bundles/{kit_sku}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleFields {
    pub components: Option<Vec<ComponentFields>>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentFields {
    pub sku: Option<String>,
    /// Units of the component in one kit (≥ 1).
    pub qty: Option<u32>,
}

/// A kit definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct BundleView {
    #[schema(value_type = String)]
    pub kit: Sku,
    pub components: Vec<ComponentView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentView {
    #[schema(value_type = String)]
    pub sku: Sku,
    pub qty: u32,
}

impl From<Bundle> for BundleView {
    fn from(b: Bundle) -> BundleView {
        BundleView {
            kit: b.kit,
            components: b
                .components
                .into_iter()
                .map(|c| ComponentView {
                    sku: c.sku,
                    qty: c.qty,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BundleList {
    pub items: Vec<BundleView>,
}

fn invalid_bundle(problems: Vec<FieldProblem>) -> ApiError {
    let details: Vec<ErrorDetail> = problems.into_iter().map(|p| p.at(0)).collect();
    ApiError::invalid("invalid_bundle", "the kit definition is invalid", details)
}

fn parse_bundle(kit: &str, body: Value) -> Result<Bundle, ApiError> {
    let fields: BundleFields = serde_json::from_value(body)
        .map_err(|e| invalid_bundle(vec![FieldProblem::new("components", e.to_string())]))?;
    let mut problems = Vec::new();
    let kit = Sku::parse(kit)
        .map_err(|e| problems.push(FieldProblem::new("kit", e.to_string())))
        .ok();
    let Some(raw) = fields.components else {
        return Err(invalid_bundle(vec![FieldProblem::new(
            "components",
            "is required",
        )]));
    };
    let mut components = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        let sku = match &c.sku {
            Some(s) => Sku::parse(s.as_str())
                .map_err(|e| {
                    problems.push(FieldProblem::new(
                        format!("components[{i}].sku"),
                        e.to_string(),
                    ))
                })
                .ok(),
            None => {
                problems.push(FieldProblem::new(
                    format!("components[{i}].sku"),
                    "is required",
                ));
                None
            }
        };
        let qty = match c.qty {
            Some(0) => {
                problems.push(FieldProblem::new(
                    format!("components[{i}].qty"),
                    "must be at least 1",
                ));
                None
            }
            Some(q) => Some(q),
            None => {
                problems.push(FieldProblem::new(
                    format!("components[{i}].qty"),
                    "is required",
                ));
                None
            }
        };
        if let (Some(sku), Some(qty)) = (sku, qty) {
            components.push(BundleComponent { sku, qty });
        }
    }
    match kit {
        Some(kit) if problems.is_empty() => Ok(Bundle { kit, components }),
        _ => Err(invalid_bundle(problems)),
    }
}

#[utoipa::path(
    put,
    path = "/v1/bundles/{kit_sku}",
    tag = "bundles",
    params(("kit_sku" = String, Path, description = "The kit's SKU (a variant)")),
    request_body = BundleFields,
    responses(
        (status = 200, description = "Created or replaced.", body = BundleView),
        (status = 422, description = "`invalid_bundle`, `unknown_sku` (kit or component not a known variant), or the kit set's problem: `bundle_cycle`, `self_reference`, `duplicate_component`, `no_components`, `zero_qty`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_bundle(
    State(state): State<AppState>,
    caller: Authorized<Admin>,
    PathParam(kit): PathParam,
    JsonBody(body): JsonBody,
) -> Result<Json<BundleView>, ApiError> {
    let bundle = parse_bundle(&kit, body)?;
    let mut skus = vec![bundle.kit.clone()];
    skus.extend(bundle.components.iter().map(|c| c.sku.clone()));
    let known: BTreeSet<Sku> = state
        .store
        .variant_stock(&skus)
        .await
        .map_err(ApiError::Storage)?
        .into_iter()
        .map(|v| v.variant.sku)
        .collect();
    let mut details = Vec::new();
    if !known.contains(&bundle.kit) {
        details.push(FieldProblem::new("kit", format!("unknown sku {}", bundle.kit)).at(0));
    }
    for (i, c) in bundle.components.iter().enumerate() {
        if !known.contains(&c.sku) {
            details.push(
                FieldProblem::new(
                    format!("components[{i}].sku"),
                    format!("unknown sku {}", c.sku),
                )
                .at(0),
            );
        }
    }
    if !details.is_empty() {
        return Err(ApiError::invalid(
            "unknown_sku",
            "the kit names unknown variants",
            details,
        ));
    }
    let mut all: Vec<Bundle> = state
        .store
        .bundles()
        .await
        .map_err(ApiError::Storage)?
        .into_iter()
        .filter(|b| b.kit != bundle.kit)
        .collect();
    all.push(bundle.clone());
    if let Err(errors) = validate_bundles(&all) {
        let code = errors.first().map_or("invalid_bundle", |e| e.code());
        let details = errors
            .iter()
            .map(|e| ErrorDetail {
                index: None,
                field: Some("components".to_string()),
                key: None,
                code: Some(e.code().to_string()),
                message: e.to_string(),
            })
            .collect();
        return Err(ApiError::invalid(
            code,
            format!("kit {} would make the kit definitions invalid", bundle.kit),
            details,
        ));
    }
    state
        .store
        .put_bundle(bundle.clone(), &caller.caller)
        .await
        .map_err(ApiError::Storage)?;
    state
        .store
        .refresh_desired(Some(vec![bundle.kit.clone()]))
        .await
        .map_err(ApiError::Storage)?;
    Ok(Json(bundle.into()))
}

#[utoipa::path(
    get,
    path = "/v1/bundles",
    tag = "bundles",
    responses((status = 200, description = "Every kit definition.", body = BundleList)),
    security(("bearer" = []))
)]
pub async fn list_bundles(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
) -> Result<Json<BundleList>, ApiError> {
    let items = state.store.bundles().await.map_err(ApiError::Storage)?;
    Ok(Json(BundleList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/bundles/{kit_sku}",
    tag = "bundles",
    params(("kit_sku" = String, Path, description = "The kit's SKU")),
    responses(
        (status = 204, description = "Removed; the kit's own stock stays."),
        (status = 404, description = "`unknown_bundle`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_bundle(
    State(state): State<AppState>,
    caller: Authorized<Admin>,
    PathParam(kit): PathParam,
) -> Result<StatusCode, ApiError> {
    let unknown =
        || ApiError::not_found("unknown_bundle", format!("no kit definition for {kit:?}"));
    let sku = input::parse_sku(&kit).map_err(|_| unknown())?;
    if state
        .store
        .delete_bundle(&sku, &caller.caller)
        .await
        .map_err(ApiError::Storage)?
    {
        state
            .store
            .refresh_desired(Some(vec![sku]))
            .await
            .map_err(ApiError::Storage)?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown())
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KitChangeParams {
    /// Only this kit's changes.
    pub kit: Option<String>,
    /// Changes with a larger id (the previous page's `next_after`).
    pub after: Option<i64>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KitChangePage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<KitChange>,
    pub next_after: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/kit-changes",
    tag = "bundles",
    params(KitChangeParams),
    responses(
        (status = 200, description = "Kit definition changes, oldest first: id, when, the kit, `put` or `delete`, the components after the change and who made it.", body = KitChangePage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_kit_changes(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(params): QueryParams<KitChangeParams>,
) -> Result<Json<KitChangePage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let kit = params
        .kit
        .filter(|s| !s.is_empty())
        .map(|s| Sku::parse(s).map_err(|e| ApiError::InvalidQuery(format!("kit: {e}"))))
        .transpose()?;
    let items = state
        .store
        .kit_changes(kit.as_ref(), params.after, limit)
        .await
        .map_err(ApiError::Storage)?;
    let next_after = if items.len() == limit as usize {
        items.last().map(|c| c.id)
    } else {
        None
    };
    Ok(Json(KitChangePage { items, next_after }))
}
