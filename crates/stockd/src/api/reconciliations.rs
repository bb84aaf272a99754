//! Reconciliation runs: start one (per channel or for every connected
//! channel), follow its progress, read its report and the listings that
//! were not in sync.

use crate::api::{page_limit, AppState, PathParam, QueryParams};
use crate::auth::{Admin, Authorized, Read};
use crate::error::{ApiError, ErrorBody};
use crate::outbound::reconcile::{RequestError, RunView};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use stockd_core::ChannelId;
use stockd_store::reconcile::{DriftClass, RunItem};
use utoipa::{IntoParams, ToSchema};

/// The body of `POST /v1/reconciliations` (may be empty: every channel).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Only this channel (default: every connected channel).
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub channel: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunView>,
    /// Pass as `before_id` for the next (older) page; null on the last.
    pub next_before_id: Option<i64>,
}

fn bad_query(message: impl Into<String>) -> ApiError {
    ApiError::InvalidQuery(message.into())
}

fn unknown_run(raw: &str) -> ApiError {
    ApiError::NotFound {
        code: "unknown_reconciliation",
        message: format!("no reconciliation run with id {raw:?}"),
    }
}

fn reconciler(state: &AppState) -> Result<&crate::outbound::reconcile::Reconciler, ApiError> {
    state
        .reconciler
        .as_deref()
        .ok_or_else(|| ApiError::Invalid {
            code: "reconciliation_unavailable",
            message: "this server runs no reconciliation".into(),
            details: Vec::new(),
        })
}

#[utoipa::path(
    post,
    path = "/v1/reconciliations",
    tag = "reconciliation",
    request_body(content = Option<StartRequest>, description = "Optional: an empty body reconciles every connected channel."),
    responses(
        (status = 202, description = "Runs queued (a channel with a run already queued or running answers that run).", body = RunList),
        (status = 400, description = "`malformed_json`.", body = ErrorBody),
        (status = 422, description = "`invalid_reconciliation` (bad body), `channel_not_connected`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn start(
    State(state): State<AppState>,
    _caller: Authorized<Admin>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RunList>), ApiError> {
    // An empty body means every channel.
    let request: StartRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartRequest::default()
    } else {
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        serde_json::from_value(value).map_err(|e| ApiError::Invalid {
            code: "invalid_reconciliation",
            message: e.to_string(),
            details: Vec::new(),
        })?
    };
    let channel = request
        .channel
        .map(|c| {
            ChannelId::parse(c).map_err(|e| ApiError::Invalid {
                code: "invalid_reconciliation",
                message: format!("channel: {e}"),
                details: Vec::new(),
            })
        })
        .transpose()?;
    let runs = reconciler(&state)?
        .request(channel.as_ref(), "api")
        .await
        .map_err(|e| match e {
            RequestError::NotConnected(c) => ApiError::Invalid {
                code: "channel_not_connected",
                message: format!("channel {c} is not connected to this server"),
                details: Vec::new(),
            },
            RequestError::Store(e) => ApiError::Storage(e),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunList {
            runs: runs.iter().map(RunView::from).collect(),
            next_before_id: None,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this channel.
    pub channel: Option<String>,
    /// Runs older than this id (the previous page's `next_before_id`).
    pub before_id: Option<i64>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/reconciliations",
    tag = "reconciliation",
    params(ListParams),
    responses(
        (status = 200, description = "Runs, newest first.", body = RunList),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<RunList>, ApiError> {
    let limit = page_limit(params.limit)?;
    let channel = params
        .channel
        .map(|c| ChannelId::parse(c).map_err(|e| bad_query(format!("channel: {e}"))))
        .transpose()?;
    let runs = state
        .store
        .recon_runs(channel.as_ref(), params.before_id, limit)
        .await
        .map_err(ApiError::Storage)?;
    let next_before_id = if runs.len() == limit as usize {
        runs.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(RunList {
        runs: runs.iter().map(RunView::from).collect(),
        next_before_id,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/reconciliations/{id}",
    tag = "reconciliation",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run: status, progress, counts per class, drift rate, fixed.", body = RunView),
        (status = 404, description = "`unknown_reconciliation`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_one(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    PathParam(raw): PathParam,
) -> Result<Json<RunView>, ApiError> {
    let id: i64 = raw.parse().map_err(|_| unknown_run(&raw))?;
    let run = state
        .store
        .recon_run(id)
        .await
        .map_err(ApiError::Storage)?
        .ok_or_else(|| unknown_run(&raw))?;
    let mut view = RunView::from(&run);
    view.channel_listings_read = state
        .reconciler
        .as_ref()
        .and_then(|r| r.bulk_read_progress(run.id));
    Ok(Json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ItemParams {
    /// Only this class: `channel_differs`, `missing_on_channel`,
    /// `unknown_to_stockd`, `pending`, `unreadable`.
    #[param(
        pattern = "^(channel_differs|missing_on_channel|unknown_to_stockd|pending|unreadable|in_sync)?$"
    )]
    pub class: Option<String>,
    /// Continue after this SKU (the previous page's `next_after`).
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemPage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<RunItem>,
    pub next_after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/reconciliations/{id}/items",
    tag = "reconciliation",
    params(("id" = i64, Path, description = "Run id"), ItemParams),
    responses(
        (status = 200, description = "Listings of the run that were not in sync, in SKU order, with what stockd expected and what the channel showed.", body = ItemPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
        (status = 404, description = "`unknown_reconciliation`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn items(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    PathParam(raw): PathParam,
    QueryParams(params): QueryParams<ItemParams>,
) -> Result<Json<ItemPage>, ApiError> {
    let id: i64 = raw.parse().map_err(|_| unknown_run(&raw))?;
    let limit = page_limit(params.limit)?;
    let class = params
        .class
        .filter(|c| !c.is_empty())
        .map(|c| {
            DriftClass::parse(&c).ok_or_else(|| bad_query(format!("class: unknown class {c:?}")))
        })
        .transpose()?;
    if state
        .store
        .recon_run(id)
        .await
        .map_err(ApiError::Storage)?
        .is_none()
    {
        return Err(unknown_run(&raw));
    }
    let items = state
        .store
        .recon_items(
            id,
            class,
            params.after.as_deref().filter(|a| !a.is_empty()),
            limit,
        )
        .await
        .map_err(ApiError::Storage)?;
    let next_after = if items.len() == limit as usize {
        items.last().map(|i| i.sku.clone())
    } else {
        None
    };
    Ok(Json(ItemPage { items, next_after }))
}
