//! `/v1/feeds`: the configured supplier feeds with their latest run, and the
//! runs of one feed (rows applied, duplicate, bad; refused or failed runs
//! with their error).

use crate::api::{page_limit, AppState, PathParam, QueryParams};
use crate::auth::{Authorized, Read};
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A configured feed and its latest run.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedItem {
    #[schema(value_type = Object)]
    pub feed: crate::inbound::feeds::FeedSettings,
    /// The newest run (null before the first).
    #[schema(value_type = Option<Object>)]
    pub last_run: Option<stockd_store::inbound::FeedRunRow>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedList {
    pub items: Vec<FeedItem>,
}

#[utoipa::path(
    get,
    path = "/v1/feeds",
    tag = "inbound",
    responses((status = 200, description = "The configured feeds.", body = FeedList)),
    security(("bearer" = []))
)]
pub async fn list_feeds(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
) -> Result<Json<FeedList>, ApiError> {
    let mut items = Vec::with_capacity(state.feeds.len());
    for feed in state.feeds.iter() {
        let last_run = state
            .store
            .feed_runs(&feed.id, 1)
            .await
            .map_err(ApiError::Storage)?
            .into_iter()
            .next();
        items.push(FeedItem {
            feed: feed.clone(),
            last_run,
        });
    }
    Ok(Json(FeedList { items }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    /// Most runs returned, newest first, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedRuns {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<stockd_store::inbound::FeedRunRow>,
}

#[utoipa::path(
    get,
    path = "/v1/feeds/{id}/runs",
    tag = "inbound",
    params(("id" = String, Path, description = "Feed id"), RunsParams),
    responses(
        (status = 200, description = "Runs of the feed, newest first.", body = FeedRuns),
        (status = 404, description = "`unknown_feed`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_runs(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    PathParam(id): PathParam,
    QueryParams(params): QueryParams<RunsParams>,
) -> Result<Json<FeedRuns>, ApiError> {
    let limit = page_limit(params.limit)?;
    let known = state.feeds.iter().any(|f| f.id == id);
    let items = state
        .store
        .feed_runs(&id, limit)
        .await
        .map_err(ApiError::Storage)?;
    if !known && items.is_empty() {
        return Err(ApiError::not_found(
            "unknown_feed",
            format!("no feed {id:?} is configured or has run"),
        ));
    }
    Ok(Json(FeedRuns { items }))
}
