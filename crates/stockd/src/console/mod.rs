//! The operator console: server-rendered HTML at `/`, served by `stockd
//! serve` next to the API. Pages: Overview (KPIs, live charts, channel
//! health), Stock (search, one SKU with its explain trail), Channels
//! (listings by state, dead letters, reconciliation runs), Returns (open
//! RMAs), Rules (editor, preview, apply, diff, rollback), Quarantine and
//! rejected inbound messages.
//!
//! Access follows the API: a token is exchanged for a session cookie with the
//! token's role (`session`); every change is a POST carrying the session's
//! CSRF token and re-checks the role. Assets (one stylesheet, one small
//! script) are compiled into the binary; charts are SVG drawn here
//! (`chart`) from samples the console takes every few seconds (`live`).

mod channels;
mod chart;
pub mod html;
pub mod live;
mod overview;
mod reconciliations;
mod returns;
mod rules;
pub mod session;
mod stock;

use crate::api::AppState;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// What console handlers reach: the API's state plus sessions and samples.
#[derive(Clone)]
pub struct Console {
    pub app: AppState,
    pub sessions: Arc<session::Sessions>,
    pub live: Arc<live::Live>,
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The console's routes, to be merged into the API router. Starts the
/// sampler for the live charts (it stops when the router is dropped).
pub fn router<S>(app: AppState) -> Router<S> {
    let live = Arc::new(live::Live::default());
    if app.console_live {
        live::spawn_sampler(app.clone(), Arc::downgrade(&live));
    }
    let console = Console {
        app,
        sessions: Arc::new(session::Sessions::default()),
        live,
    };
    Router::new()
        .route("/", get(overview::page))
        .route("/overview/live", get(overview::live_fragment))
        .route("/overview/stream", get(overview::stream))
        .route("/signin", get(session::sign_in_form).post(session::sign_in))
        .route("/signout", post(session::sign_out))
        .route("/stock", get(stock::search))
        .route("/stock/{sku}", get(stock::detail))
        .route("/channels", get(channels::list))
        .route("/channels/{id}", get(channels::listings))
        .route(
            "/channels/{id}/reconcile",
            post(channels::start_reconciliation),
        )
        .route("/reconciliations/{id}", get(reconciliations::run_page))
        .route("/dlq/{id}/retry", post(channels::retry_letter))
        .route("/dlq/{id}/discard", post(channels::discard_letter))
        .route("/quarantine", get(channels::quarantine))
        .route(
            "/quarantine/{id}/discard",
            post(channels::discard_quarantined),
        )
        .route("/returns", get(returns::open_returns))
        .route("/inbound", get(returns::rejected))
        .route("/inbound/{id}/discard", post(returns::discard_rejected))
        .route("/rules", get(rules::page))
        .route("/rules/preview", post(rules::preview))
        .route("/rules/apply", post(rules::apply))
        .route("/rules/rollback", post(rules::rollback))
        .route("/rules/diff", get(rules::diff))
        .route(
            "/console/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/console/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .with_state(console)
}
