//! `POST /v1/events`: the only way stock changes. A request holds one event
//! or an array of them; it is validated whole, then applied atomically by the
//! store, each event once per idempotency key.

use crate::api::{schema, AppState, JsonBody};
use crate::auth::{Authorized, Ingest};
use crate::error::{ApiError, ErrorBody};
use crate::input;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use stockd_core::{EventResult, RequestError};
use utoipa::ToSchema;

/// One result per event, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsResponse {
    #[schema(value_type = Vec<schema::EventResult>)]
    pub results: Vec<EventResult>,
}

#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    request_body(content = schema::EventsBody, description = "One event object or an array of up to 10,000; the array applies atomically."),
    responses(
        (status = 200, description = "Every event applied, recognised as a duplicate, or quarantined.", body = EventsResponse),
        (status = 400, description = "`malformed_json`: the body is not JSON, or an object in it names one member twice.", body = ErrorBody),
        (status = 409, description = "`idempotency_key_reused`: a key was used before with another payload; nothing applied.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send application/json.", body = ErrorBody),
        (status = 422, description = "`invalid_event` (details name index and field), `too_many_events`, or the code of an event the ledger refuses (e.g. `reservation_exceeded`); nothing applied.", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`; nothing applied, retry.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn post_events(
    State(state): State<AppState>,
    _caller: Authorized<Ingest>,
    JsonBody(body): JsonBody,
) -> Result<Json<EventsResponse>, ApiError> {
    let outcome = submit(&state, body).await;
    match &outcome {
        Ok(results) => state.metrics.record_event_results(results),
        Err(error) => state.metrics.record_event_request_refused(error.code()),
    }
    outcome.map(|results| Json(EventsResponse { results }))
}

async fn submit(state: &AppState, body: serde_json::Value) -> Result<Vec<EventResult>, ApiError> {
    let events = input::parse_events(body)?;
    let submissions = events.into_iter().map(stockd_store::submission).collect();
    match state.store.submit(submissions).await {
        Ok(Ok(results)) => Ok(results),
        Ok(Err(RequestError::KeyReused { index, key })) => Err(ApiError::KeyReused {
            index,
            key: key.to_string(),
        }),
        Ok(Err(RequestError::Rejected { index, error })) => {
            Err(ApiError::EventRefused { index, error })
        }
        Err(e) => Err(ApiError::Storage(e)),
    }
}
