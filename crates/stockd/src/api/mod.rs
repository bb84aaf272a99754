//! The HTTP API: the router, its shared state, and the extractors every
//! handler uses so that bad input always becomes a JSON error with a stable
//! code (never a panic or a 500). One module per resource.

pub mod bundles;
pub mod catalog;
pub mod channels;
mod contract;
pub mod events;
pub mod feeds;
pub mod inbound;
pub mod kpis;
pub mod ledger;
pub mod ops;
use contract::ErrorResponses;
pub mod orders;
pub mod quarantine;
pub mod reconciliations;
pub mod returns;
pub mod rules;
pub mod schema;
pub mod stock;
pub mod strict_json;
pub mod sync;

use crate::auth::Auth;
use crate::config::HttpLimits;
use crate::error::{self, ApiError};
use crate::metrics::{self, Metrics};
use axum::body::{Body, Bytes};
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request,
};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{Response, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use stockd_store::Store;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;
use utoipa::OpenApi;

/// Page size when a list request names none.
pub const PAGE_LIMIT_DEFAULT: u32 = 100;
/// Largest page a list request may ask for.
pub const PAGE_LIMIT_MAX: u32 = 1_000;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Connected channels (webhooks are verified by their connector).
    pub connectors: Arc<crate::webhooks::Connectors>,
    pub listing_index: Arc<crate::webhooks::ListingIndex>,
    pub sync_kpis: Arc<crate::outbound::dispatch::SyncKpis>,
    pub inbound_kpis: Arc<crate::inbound::nats::InboundKpis>,
    /// The stock publisher's counters (`None`: no `[outbound.nats]`).
    pub outbound_kpis: Option<Arc<crate::outbound::publish::OutboundKpis>>,
    /// Configured supplier feeds.
    pub feeds: Arc<Vec<crate::inbound::feeds::FeedSettings>>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    /// The OpenAPI document, rendered once at start.
    pub openapi_json: Arc<str>,
    /// Reconciliation runs (`None`: this server runs none).
    pub reconciler: Option<Arc<crate::outbound::reconcile::Reconciler>>,
    /// Turns true when the server starts to stop: long-lived responses
    /// (the console's event stream) end so the shutdown is not held up.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// Whether the console samples its live charts (a simulated day has no
    /// one to watch them, and the samples would cost a query every 2 s of it).
    pub console_live: bool,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, auth: Auth) -> AppState {
        let metrics = Metrics::new(store.backend_name());
        let openapi_json = ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        AppState {
            store,
            connectors: Arc::new(crate::webhooks::Connectors::new()),
            listing_index: Arc::new(crate::webhooks::ListingIndex::default()),
            sync_kpis: Arc::new(crate::outbound::dispatch::SyncKpis::default()),
            inbound_kpis: Arc::default(),
            outbound_kpis: None,
            feeds: Arc::default(),
            auth: Arc::new(auth),
            metrics: Arc::new(metrics),
            openapi_json: openapi_json.into(),
            reconciler: None,
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            console_live: true,
        }
    }
}

/// The whole API.
pub fn router(state: AppState, limits: HttpLimits) -> Router {
    Router::new()
        .route(
            "/v1/events",
            post(events::post_events).layer(DefaultBodyLimit::max(limits.events_body_limit_bytes)),
        )
        .route("/v1/locations", get(catalog::list_locations))
        .route("/v1/locations/{id}", put(catalog::put_location))
        .route("/v1/variants", post(catalog::post_variants))
        .route(
            "/v1/variants/{sku}",
            get(catalog::get_variant).put(catalog::put_variant),
        )
        .route("/v1/channels", get(channels::list_channels))
        .route("/v1/outbox", get(sync::list_outbox))
        .route("/v1/dlq", get(sync::list_dlq))
        .route("/v1/dlq/{id}", delete(sync::discard_dead_letter))
        .route("/v1/dlq/{id}/retry", post(sync::retry_dead_letter))
        .route("/v1/kpis", get(kpis::get_kpis))
        .route("/v1/pushes", get(kpis::list_pushes))
        .route(
            "/v1/reconciliations",
            get(reconciliations::list).post(reconciliations::start),
        )
        .route("/v1/reconciliations/{id}", get(reconciliations::get_one))
        .route(
            "/v1/reconciliations/{id}/items",
            get(reconciliations::items),
        )
        .route(
            "/v1/webhooks/{kind}/{channel_id}",
            post(crate::webhooks::receive),
        )
        .route(
            "/v1/channels/{id}",
            get(channels::get_channel).put(channels::put_channel),
        )
        .route(
            "/v1/channels/{id}/listings",
            get(channels::list_listings).post(channels::post_listings),
        )
        .route("/v1/channels/{id}/unmapped", get(channels::list_unmapped))
        .route("/v1/bundles", get(bundles::list_bundles))
        .route("/v1/kit-changes", get(bundles::list_kit_changes))
        .route(
            "/v1/bundles/{kit_sku}",
            put(bundles::put_bundle).delete(bundles::delete_bundle),
        )
        .route("/v1/rules", get(rules::get_rules).put(rules::put_rules))
        .route("/v1/rules/versions", get(rules::list_versions))
        .route("/v1/rules/versions/{n}", get(rules::get_version))
        .route("/v1/rules/diff", get(rules::get_diff))
        .route("/v1/rules/preview", post(rules::post_preview))
        .route("/v1/rules/rollback", post(rules::post_rollback))
        .route("/v1/stock", get(stock::list_stock))
        .route("/v1/stock/{sku}", get(stock::get_stock))
        .route("/v1/ledger", get(ledger::list_ledger))
        .route("/v1/quarantine", get(quarantine::list_quarantine))
        .route("/v1/orders/{order_id}", get(orders::get_order))
        .route("/v1/returns", get(returns::list_returns))
        .route("/v1/returns/{rma_id}", get(returns::get_return))
        .route(
            "/v1/quarantine/{id}",
            delete(quarantine::discard_quarantined),
        )
        .route("/v1/inbound/rejected", get(inbound::list_rejected))
        .route("/v1/feeds", get(feeds::list_feeds))
        .route("/v1/feeds/{id}/runs", get(feeds::list_runs))
        .route(
            "/v1/inbound/rejected/{id}",
            delete(inbound::discard_rejected),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        // A bug must not take the connection down: a panicking handler becomes
        // a 500, which `json_errors` turns into `internal_error`.
        .layer(CatchPanicLayer::new())
        .layer(from_fn(error::json_errors))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response),
        )
        // The operator console answers in HTML, outside the JSON error layer.
        .merge(crate::console::router(state.clone()))
        .with_state(state)
}

fn request_span(request: &Request<Body>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(metrics::ROUTE_UNMATCHED, |p| p.as_str());
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        caller = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

fn log_response(response: &Response<Body>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    // Microsecond precision; more digits are noise.
    span.record("latency_ms", latency.as_micros() as f64 / 1000.0);
    tracing::info!("answered");
}

/// A JSON request body as a `serde_json::Value`: wrong content type → 415,
/// too large → 413, not JSON → 400 `malformed_json`. Handlers decode it
/// further, so that they can name each bad field.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|essence| {
                let essence = essence.trim().to_ascii_lowercase();
                essence == "application/json"
                    || (essence.starts_with("application/") && essence.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                    _ => ApiError::InvalidBody(rejection.body_text()),
                })?;
        // Duplicate object members are refused: 400 `malformed_json`.
        serde_json::from_slice::<strict_json::StrictValue>(&bytes)
            .map(|strict| JsonBody(strict.0))
            .map_err(|e| ApiError::MalformedJson(e.to_string()))
    }
}

/// Query parameters decoded into `T`; unknown or bad ones → 400 `invalid_query`.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(params)| QueryParams(params))
            .map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))
    }
}

/// One path parameter as text; a bad encoding → 400 `invalid_path`.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParam(value))
            .map_err(|rejection| ApiError::InvalidPath(rejection.body_text()))
    }
}

/// A page size from a query, defaulted and bounded.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(PAGE_LIMIT_DEFAULT) {
        0 => Err(ApiError::InvalidQuery(
            "limit must be at least 1".to_string(),
        )),
        n if n > PAGE_LIMIT_MAX => Err(ApiError::InvalidQuery(format!(
            "limit must be at most {PAGE_LIMIT_MAX}"
        ))),
        n => Ok(n),
    }
}

/// Adds the bearer security scheme to the OpenAPI document.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document, generated from the handlers and their types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "stockd",
        description = "The stock ledger: the single source of truth for stock per variant and location."
    ),
    paths(
        events::post_events,
        catalog::put_location,
        catalog::list_locations,
        catalog::put_variant,
        catalog::get_variant,
        catalog::post_variants,
        stock::get_stock,
        stock::list_stock,
        channels::put_channel,
        channels::list_channels,
        channels::get_channel,
        channels::post_listings,
        channels::list_listings,
        channels::list_unmapped,
        bundles::put_bundle,
        bundles::list_bundles,
        bundles::delete_bundle,
        bundles::list_kit_changes,
        rules::put_rules,
        rules::get_rules,
        rules::list_versions,
        rules::get_version,
        rules::get_diff,
        rules::post_preview,
        rules::post_rollback,
        ledger::list_ledger,
        quarantine::list_quarantine,
        quarantine::discard_quarantined,
        orders::get_order,
        returns::list_returns,
        returns::get_return,
        inbound::list_rejected,
        inbound::discard_rejected,
        feeds::list_feeds,
        feeds::list_runs,
        sync::list_outbox,
        sync::list_dlq,
        sync::retry_dead_letter,
        sync::discard_dead_letter,
        kpis::get_kpis,
        kpis::list_pushes,
        reconciliations::start,
        reconciliations::list,
        reconciliations::get_one,
        reconciliations::items,
        crate::webhooks::receive,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi,
    ),
    components(schemas(error::ErrorBody, error::ErrorObject, error::ErrorDetail)),
    modifiers(&BearerAuth, &ErrorResponses),
    tags(
        (name = "events", description = "The only way stock changes."),
        (name = "sync", description = "The outbound sync: outbox, dead-letter queue, latency KPIs."),
        (name = "reconciliation", description = "Read back what each channel shows, compare, classify and fix drift."),
        (name = "webhooks", description = "Order notifications from channels, verified by signature."),
        (name = "catalog", description = "Variants and locations."),
        (name = "stock", description = "Stock views computed from the ledger."),
        (name = "channels", description = "Channels, their listings and what each listing may show."),
        (name = "bundles", description = "Kits: variants made of other variants."),
        (name = "rules", description = "The versioned channel rules: validate, preview, apply, diff, roll back."),
        (name = "ledger", description = "The audit trail."),
        (name = "quarantine", description = "Events waiting for what they name."),
        (name = "orders", description = "Where stockd reserved each order line: the pick list."),
        (name = "returns", description = "Returns tracked per RMA."),
        (name = "inbound", description = "Bus messages and supplier feeds."),
        (name = "ops", description = "Health, readiness, metrics, this document."),
    )
)]
pub struct ApiDoc;
