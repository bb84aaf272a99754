//! Open returns (what `GET /v1/returns?status=open` lists) and rejected
//! inbound bus messages (`GET /v1/inbound/rejected`) with discard (as
//! `DELETE /v1/inbound/rejected/{id}`).

use super::channels::{redirect, storage_error, Done, PAGE};
use super::html::{self, action_button, esc, thousands, url_part};
use super::session::{CsrfForm, Viewer};
use super::Console;
use crate::auth::Role;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use std::fmt::Write;
use stockd_core::returns::{ReturnStatus, ReturnView};
use stockd_core::RmaId;

/// RMAs as a table: one row per line, the RMA's id on its first.
pub fn returns_table(id: &str, returns: &[ReturnView], empty: &str) -> String {
    let mut out = format!(
        "<div class=\"scroll\"><table id=\"{id}\"><thead><tr><th>RMA</th><th>SKU</th><th>Location</th>\
         <th class=\"num\">Received</th><th class=\"num\">Sellable</th><th class=\"num\">Unsellable</th>\
         <th class=\"num\">To inspect</th></tr></thead><tbody>"
    );
    if returns.is_empty() {
        let _ = write!(out, "<tr><td colspan=\"7\">{}</td></tr>", esc(empty));
    }
    for r in returns {
        for (i, l) in r.lines.iter().enumerate() {
            let _ = write!(
                out,
                "<tr><td>{}</td><td><a href=\"/stock/{}\">{}</a></td><td>{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                if i == 0 { esc(r.rma_id.as_str()).to_string() } else { String::new() },
                url_part(l.sku.as_str()),
                esc(l.sku.as_str()),
                esc(l.location.as_str()),
                thousands(l.received_qty),
                thousands(l.sellable_qty),
                thousands(l.unsellable_qty),
                thousands(l.pending_qty),
            );
        }
    }
    out.push_str("</tbody></table></div>");
    out
}

#[derive(Deserialize)]
pub struct ReturnsQuery {
    after: Option<String>,
}

/// `GET /returns`: open RMAs in id order.
pub async fn open_returns(
    State(console): State<Console>,
    viewer: Viewer,
    Query(query): Query<ReturnsQuery>,
) -> Response {
    let after = query
        .after
        .filter(|a| !a.is_empty())
        .and_then(|a| RmaId::parse(a).ok());
    let returns = match console
        .app
        .store
        .returns(Some(ReturnStatus::Open), after.as_ref(), PAGE)
        .await
    {
        Ok(r) => r,
        Err(e) => return storage_error(&viewer, e),
    };
    let mut body = String::from(
        "<p class=\"hint\">Returns received and not all verified: the units to inspect count as pending returns, not as stock, until a verification says sellable or unsellable.</p>",
    );
    body.push_str(&returns_table("returns", &returns, "No open returns."));
    if returns.len() == PAGE as usize {
        if let Some(last) = returns.last() {
            let _ = write!(
                body,
                "<p><a href=\"/returns?after={}\">Next page →</a></p>",
                url_part(last.rma_id.as_str())
            );
        }
    }
    html::html_response(
        StatusCode::OK,
        html::page("Open returns", "/returns", Some(&viewer), None, &body),
    )
}

#[derive(Deserialize)]
pub struct RejectedQuery {
    after_id: Option<i64>,
    done: Option<String>,
    id: Option<i64>,
}

/// `GET /inbound`: rejected bus messages with their reason and body.
pub async fn rejected(
    State(console): State<Console>,
    viewer: Viewer,
    Query(query): Query<RejectedQuery>,
) -> Response {
    let rows = match console
        .app
        .store
        .rejected(query.after_id.unwrap_or(0), PAGE)
        .await
    {
        Ok(r) => r,
        Err(e) => return storage_error(&viewer, e),
    };
    let mut body = String::from(
        "<p class=\"hint\">Bus messages that can never apply (malformed, an invalid event, a key reused with another payload, an event the ledger refuses). They were taken off the bus and are kept here until discarded.</p>\
         <div class=\"scroll\"><table id=\"rejected\"><thead><tr><th class=\"num\">Id</th><th>Received</th><th>Subject</th>\
         <th class=\"num\">Stream seq</th><th>Code</th><th>Reason</th><th>Body</th><th></th></tr></thead><tbody>",
    );
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"8\">No rejected messages.</td></tr>");
    }
    for r in &rows {
        let m = &r.message;
        let discard = action_button(
            &viewer,
            Role::Admin,
            &format!("/inbound/{}/discard", r.id),
            "Discard",
            "danger",
        );
        // Long bodies are cut for the table; the API has them whole.
        let shown: String = m.body.chars().take(300).collect();
        let _ = write!(
            body,
            "<tr data-rejected=\"{}\"><td class=\"num\">{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td>\
             <td><code>{}</code></td><td>{}</td><td><code>{}{}</code></td><td>{discard}</td></tr>",
            r.id,
            r.id,
            m.received_at.format("%Y-%m-%d %H:%M:%S"),
            esc(&m.subject),
            m.stream_seq,
            esc(&m.code),
            esc(&m.reason),
            esc(&shown),
            if shown.len() < m.body.len() { "…" } else { "" },
        );
    }
    body.push_str("</tbody></table></div>");
    if rows.len() == PAGE as usize {
        if let Some(last) = rows.last() {
            let _ = write!(
                body,
                "<p><a href=\"/inbound?after_id={}\">Next page →</a></p>",
                last.id
            );
        }
    }
    let flash = Done {
        done: query.done,
        id: query.id,
    }
    .message();
    html::html_response(
        StatusCode::OK,
        html::page(
            "Rejected inbound messages",
            "/inbound",
            Some(&viewer),
            flash.as_deref(),
            &body,
        ),
    )
}

/// `POST /inbound/{id}/discard`.
pub async fn discard_rejected(
    State(console): State<Console>,
    viewer: Viewer,
    Path(raw): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = viewer.refusal(form.csrf.as_deref(), Role::Admin) {
        return refused;
    }
    let Ok(id) = raw.parse::<i64>() else {
        return html::error_page(
            StatusCode::NOT_FOUND,
            Some(&viewer),
            "No such rejected message.",
        );
    };
    match console.app.store.discard_rejected(id).await {
        Ok(true) => {
            tracing::info!(caller = %viewer.caller, id, "rejected message discarded from the console");
            redirect(&format!("/inbound?done=rejected-discarded&id={id}"))
        }
        Ok(false) => redirect(&format!("/inbound?done=gone&id={id}")),
        Err(e) => storage_error(&viewer, e),
    }
}
