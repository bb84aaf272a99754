//! Operations endpoints: liveness (`/healthz`), readiness (`/readyz`, the
//! store answers; says whether desired channel states are being recomputed), Prometheus metrics (`/metrics`) and the OpenAPI document
//! (`/openapi.json`). Only the last needs a token.

use crate::api::AppState;
use crate::auth::{Authorized, Read};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: &'static str,
    /// `/readyz` only: `running` while the desired channel state of every
    /// listing is recomputed (after a start, a rules or a channel change),
    /// `done` after. Events, reads and pushes are served meanwhile; what a
    /// channel is sent may still move when the pass reaches its listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recompute: Option<&'static str>,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    responses((status = 200, description = "The process runs.", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        recompute: None,
    })
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "The store answers: the instance takes requests (also while `recompute` is `running`).", body = Health),
        (status = 503, description = "`storage_unavailable`.", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await.map_err(ApiError::Storage)?;
    let recompute = if state.store.recompute_done() {
        "done"
    } else {
        "running"
    };
    Ok(Json(Health {
        status: "ready",
        recompute: Some(recompute),
    }))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text exposition format.", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Outbox ages are left out (not failed) when the store cannot answer.
    let oldest = state.store.outbox_oldest_unsent().await.unwrap_or_default();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        {
            let mut text = state.metrics.render();
            state
                .sync_kpis
                .render_with(&oldest, chrono::Utc::now(), &mut text);
            crate::outbound::reconcile::render_metrics(&*state.store, &mut text).await;
            state.inbound_kpis.render(&mut text);
            if let Some(outbound) = &state.outbound_kpis {
                crate::outbound::publish::render_metrics(&*state.store, outbound, &mut text).await;
            }
            crate::api::kpis::render_metrics(&*state.store, &mut text).await;
            text
        },
    )
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses((status = 200, description = "This API's OpenAPI 3.1 document.", content_type = "application/json", body = Object)),
    security(("bearer" = []))
)]
pub async fn openapi(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        state.openapi_json.to_string(),
    )
}
