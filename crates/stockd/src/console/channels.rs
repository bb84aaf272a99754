//! Channels (health, the dead-letter queue with retry and discard), one
//! channel's listings (all, lagging, held by budget, dead-lettered, drifting
//! in its last reconciliation) with its reconciliation runs and a button to
//! start one, and the quarantine with discard.

use super::html::{self, action_button, esc, thousands, url_part};
use super::session::{CsrfForm, Viewer};
use super::Console;
use crate::auth::Role;
use axum::extract::{Path, Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use chrono::Utc;
use serde::Deserialize;
use std::fmt::Write;
use stockd_core::{ChannelId, Sku};
use stockd_store::console::LaggingFilter;
use stockd_store::outbox::{DeadLetter, OutboxRow};
use stockd_store::reconcile::{DriftClass, RunRecord, RunStatus};
use stockd_store::StoreError;

/// Rows per page.
pub const PAGE: u32 = 100;

pub(super) fn storage_error(viewer: &Viewer, e: StoreError) -> Response {
    tracing::error!(error = %e, "console read failed");
    html::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(viewer),
        "The store did not answer; try again in a moment.",
    )
}

pub(super) fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// Fixed messages after an action (never text from the request).
#[derive(Deserialize)]
pub struct Done {
    pub done: Option<String>,
    pub id: Option<i64>,
}

impl Done {
    pub fn message(&self) -> Option<String> {
        let id = self.id.unwrap_or_default();
        Some(match self.done.as_deref()? {
            "retried" => {
                format!("Dead letter {id} queued again: its listing's latest state will be pushed.")
            }
            "discarded" => format!("Dead letter {id} discarded."),
            "quarantine-discarded" => {
                format!("Quarantined event {id} discarded; its key is free again.")
            }
            "gone" => format!("Entry {id} was already handled."),
            "recon-started" => format!(
                "Reconciliation run {id} started: it reads every listing back from the channel."
            ),
            "recon-not-connected" => {
                "This channel is not connected to this server: nothing to read back.".to_string()
            }
            "recon-unavailable" => "This server runs no reconciliation.".to_string(),
            "rejected-discarded" => format!("Rejected message {id} discarded."),
            _ => return None,
        })
    }
}

fn dead_letter_table(viewer: &Viewer, letters: &[DeadLetter], back: &str) -> String {
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"dlq\"><thead><tr><th class=\"num\">Id</th><th>Channel</th><th>SKU</th>\
         <th class=\"num\">Wanted</th><th>Error</th><th class=\"num\">Attempts</th><th>Since</th><th></th></tr></thead><tbody>",
    );
    if letters.is_empty() {
        out.push_str("<tr><td colspan=\"8\">No dead letters.</td></tr>");
    }
    for l in letters {
        let back_field = format!(
            "<input type=\"hidden\" name=\"back\" value=\"{}\">",
            esc(back)
        );
        let retry = action_button(
            viewer,
            Role::Admin,
            &format!("/dlq/{}/retry", l.id),
            "Retry",
            "",
        )
        .replace("</form>", &format!("{back_field}</form>"));
        let discard = action_button(
            viewer,
            Role::Admin,
            &format!("/dlq/{}/discard", l.id),
            "Discard",
            "danger",
        )
        .replace("</form>", &format!("{back_field}</form>"));
        let _ = write!(
            out,
            "<tr data-letter=\"{}\"><td class=\"num\">{}</td><td>{}</td><td><a href=\"/stock/{}\">{}</a></td><td class=\"num\">{}</td>\
             <td><code>{}</code> {}{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"actions\">{retry}{discard}</td></tr>",
            l.id,
            l.id,
            esc(l.channel.as_str()),
            url_part(l.sku.as_str()),
            esc(l.sku.as_str()),
            l.desired.quantity,
            esc(&l.code),
            esc(&l.message),
            l.status.map_or(String::new(), |s| format!(" (HTTP {s})")),
            l.attempts,
            l.created_at.format("%Y-%m-%d %H:%M:%S"),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `GET /channels`.
pub async fn list(
    State(console): State<Console>,
    viewer: Viewer,
    Query(done): Query<Done>,
) -> Response {
    let letters = match console.app.store.dead_letters(0, PAGE).await {
        Ok(l) => l,
        Err(e) => return storage_error(&viewer, e),
    };
    let channels = match console.app.store.channels().await {
        Ok(c) => c,
        Err(e) => return storage_error(&viewer, e),
    };
    let mut body = String::from("<ul class=\"pills\">");
    for c in &channels {
        let _ = write!(
            body,
            "<li><a href=\"/channels/{}\">{}</a> <span class=\"tag\">{}</span></li>",
            url_part(c.id.as_str()),
            esc(c.id.as_str()),
            esc(c.kind.as_str())
        );
    }
    if channels.is_empty() {
        body.push_str("<li>No channels yet.</li>");
    }
    body.push_str("</ul><h2>Dead-letter queue</h2>");
    body.push_str(&dead_letter_table(&viewer, &letters, "/channels"));
    let flash = done.message();
    html::html_response(
        StatusCode::OK,
        html::page(
            "Channels",
            "/channels",
            Some(&viewer),
            flash.as_deref(),
            &body,
        ),
    )
}

#[derive(Deserialize)]
pub struct ListingFilterQuery {
    filter: Option<String>,
    after: Option<String>,
    done: Option<String>,
    id: Option<i64>,
}

fn outbox_table(rows: &[(Sku, Option<OutboxRow>)]) -> String {
    let now = Utc::now();
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"listings\"><thead><tr><th>SKU</th><th class=\"num\">Should show</th>\
         <th class=\"num\">Channel shows</th><th>Lagging since</th><th class=\"num\">Attempts</th><th>Note</th></tr></thead><tbody>",
    );
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"6\">Nothing here.</td></tr>");
    }
    for (sku, row) in rows {
        let Some(r) = row else {
            let _ = write!(
                out,
                "<tr><td><a href=\"/stock/{}\">{}</a></td><td class=\"num\">–</td><td class=\"num\">–</td>\
                 <td>not computed yet</td><td class=\"num\">0</td><td></td></tr>",
                url_part(sku.as_str()),
                esc(sku.as_str()),
            );
            continue;
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"/stock/{}\">{}</a></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td>{}{}</td></tr>",
            url_part(sku.as_str()),
            esc(sku.as_str()),
            r.desired.quantity,
            r.channel_quantity
                .or(r.pushed.as_ref().map(|p| p.quantity))
                .map_or("–".to_string(), |q| q.to_string()),
            r.dirty_since.map_or("in sync".to_string(), |t| format!(
                "{} ago",
                html::duration_s(((now - t).num_milliseconds() as f64 / 1000.0).max(0.0))
            )),
            r.attempts,
            if r.parked { "<span class=\"bad\">dead-lettered</span> " } else { "" },
            esc(r.last_error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `GET /channels/{id}?filter=all|lagging|budget|dead`.
pub async fn listings(
    State(console): State<Console>,
    viewer: Viewer,
    Path(raw): Path<String>,
    Query(query): Query<ListingFilterQuery>,
) -> Response {
    let store = &*console.app.store;
    let channel = match ChannelId::parse(raw.clone()) {
        Ok(id) => match store.channel(&id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return html::error_page(StatusCode::NOT_FOUND, Some(&viewer), "No such channel.")
            }
            Err(e) => return storage_error(&viewer, e),
        },
        Err(_) => {
            return html::error_page(StatusCode::NOT_FOUND, Some(&viewer), "No such channel.")
        }
    };
    let after = query
        .after
        .as_deref()
        .filter(|a| !a.is_empty())
        .and_then(|a| Sku::parse(a.to_string()).ok());
    let filter = query.filter.as_deref().unwrap_or("lagging");
    let runs = match store.recon_runs(Some(&channel.id), None, RUNS_SHOWN).await {
        Ok(r) => r,
        Err(e) => return storage_error(&viewer, e),
    };
    let base = format!("/channels/{}", url_part(channel.id.as_str()));
    if filter == "drifting" {
        let table = match drifting_table(&console, &runs, &base, query.after.as_deref()).await {
            Ok(t) => t,
            Err(e) => return storage_error(&viewer, e),
        };
        let flash = Done {
            done: query.done,
            id: query.id,
        }
        .message();
        let body = format!(
            "{}{}{table}{}",
            channel_figures(&console, &channel)
                .await
                .unwrap_or_default(),
            filter_nav(&base, filter),
            runs_section(&viewer, &runs, &base),
        );
        return html::html_response(
            StatusCode::OK,
            html::page(
                channel.id.as_str(),
                "/channels",
                Some(&viewer),
                flash.as_deref(),
                &body,
            ),
        );
    }
    let lagging = match filter {
        "lagging" => Some(LaggingFilter::Lagging),
        "budget" => Some(LaggingFilter::HeldByBudget),
        "dead" => Some(LaggingFilter::DeadLettered),
        _ => None,
    };
    // Every listing in the "all" view; a listing without an outbox row yet
    // (never computed) shows without its states.
    let rows: Result<Vec<(Sku, Option<OutboxRow>)>, StoreError> = match lagging {
        Some(f) => store
            .lagging_listings(&channel.id, f, after.as_ref(), PAGE)
            .await
            .map(|rows| rows.into_iter().map(|r| (r.sku.clone(), Some(r))).collect()),
        None => match store.listings(&channel.id, after.as_ref(), PAGE).await {
            Ok(listings) => {
                let skus: Vec<Sku> = listings.into_iter().map(|l| l.sku).collect();
                store.outbox_rows(&channel.id, &skus).await.map(|rows| {
                    let mut by_sku: std::collections::HashMap<Sku, OutboxRow> =
                        rows.into_iter().map(|r| (r.sku.clone(), r)).collect();
                    skus.into_iter()
                        .map(|s| {
                            let row = by_sku.remove(&s);
                            (s, row)
                        })
                        .collect()
                })
            }
            Err(e) => Err(e),
        },
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return storage_error(&viewer, e),
    };
    let mut body = match channel_figures(&console, &channel).await {
        Ok(f) => f,
        Err(e) => return storage_error(&viewer, e),
    };
    body.push_str(&filter_nav(&base, filter));
    body.push_str(&outbox_table(&rows));
    if rows.len() == PAGE as usize {
        if let Some((last, _)) = rows.last() {
            let _ = write!(
                body,
                "<p><a href=\"{base}?filter={}&amp;after={}\">Next page →</a></p>",
                esc(filter),
                url_part(last.as_str())
            );
        }
    }
    body.push_str(&runs_section(&viewer, &runs, &base));
    let letters = match store.dead_letters(0, 1_000).await {
        Ok(l) => l
            .into_iter()
            .filter(|l| l.channel == channel.id)
            .collect::<Vec<_>>(),
        Err(e) => return storage_error(&viewer, e),
    };
    body.push_str("<h2>Dead letters</h2>");
    body.push_str(&dead_letter_table(&viewer, &letters, &base));
    let flash = Done {
        done: query.done,
        id: query.id,
    }
    .message();
    html::html_response(
        StatusCode::OK,
        html::page(
            channel.id.as_str(),
            "/channels",
            Some(&viewer),
            flash.as_deref(),
            &body,
        ),
    )
}

/// The channel's figures at the top of its page.
async fn channel_figures(
    console: &Console,
    channel: &stockd_store::channels::ChannelRecord,
) -> Result<String, StoreError> {
    let health = console
        .app
        .store
        .channel_health(std::slice::from_ref(&channel.id))
        .await?
        .pop();
    let mut body = String::new();
    if let Some(h) = &health {
        let _ = write!(
            body,
            "<div class=\"figures\"><div><span>Kind</span><b>{}</b></div><div><span>Connected</span><b>{}</b></div>\
             <div><span>Lagging</span><b>{}</b></div><div><span>Held by budget</span><b>{}</b></div>\
             <div class=\"{}\"><span>Dead letters</span><b>{}</b></div></div>",
            esc(channel.kind.as_str()),
            if console.app.connectors.contains_key(&channel.id) { "yes" } else { "no" },
            thousands(h.lagging as i64),
            thousands(h.held_by_budget as i64),
            if h.dead_letters > 0 { "bad" } else { "" },
            thousands(h.dead_letters as i64),
        );
    }
    Ok(body)
}

/// Runs listed on a channel's page.
const RUNS_SHOWN: u32 = 10;

fn filter_nav(base: &str, filter: &str) -> String {
    let mut out = String::from("<nav class=\"filters\" aria-label=\"Listing filter\">");
    let known = ["lagging", "budget", "dead", "drifting"];
    for (key, label) in [
        ("lagging", "Lagging"),
        ("budget", "Held by budget"),
        ("dead", "Dead-lettered"),
        ("drifting", "Drifting"),
        ("all", "All listings"),
    ] {
        let current = if key == filter || (key == "all" && !known.contains(&filter)) {
            " aria-current=\"true\""
        } else {
            ""
        };
        let _ = write!(out, "<a href=\"{base}?filter={key}\"{current}>{label}</a>");
    }
    out.push_str("</nav>");
    out
}

/// A channel level as a reconciliation item stores it (`quantity`,
/// `availability`), short.
pub(super) fn level_text(level: Option<&serde_json::Value>) -> String {
    let Some(v) = level else {
        return "–".to_string();
    };
    let quantity = v.get("quantity").and_then(serde_json::Value::as_i64);
    let availability = v.get("availability").and_then(serde_json::Value::as_str);
    match (quantity, availability) {
        (Some(q), Some(a)) => format!("{q} ({})", a.replace('_', " ")),
        (Some(q), None) => q.to_string(),
        (None, Some(a)) => a.replace('_', " "),
        (None, None) => v.to_string(),
    }
}

/// The listings that drifted in the channel's last completed reconciliation.
async fn drifting_table(
    console: &Console,
    runs: &[RunRecord],
    base: &str,
    after: Option<&str>,
) -> Result<String, StoreError> {
    let Some(run) = runs.iter().find(|r| r.status == RunStatus::Completed) else {
        return Ok(
            "<p id=\"drifting\">No completed reconciliation yet: start one below to compare every listing with the channel.</p>"
                .to_string(),
        );
    };
    let after = after.filter(|a| !a.is_empty());
    let mut items = Vec::new();
    for class in [DriftClass::ChannelDiffers, DriftClass::MissingOnChannel] {
        items.extend(
            console
                .app
                .store
                .recon_items(run.id, Some(class), after, PAGE)
                .await?,
        );
    }
    items.sort_by(|a, b| a.sku.cmp(&b.sku));
    items.truncate(PAGE as usize);
    let mut out = format!(
        "<p class=\"hint\">Drifting in <a href=\"/reconciliations/{}\">run {}</a>, finished {}: the channel showed something else or lacked the listing.</p>\
         <div class=\"scroll\"><table id=\"drifting\"><thead><tr><th>SKU</th><th>Class</th><th class=\"num\">stockd expected</th>\
         <th class=\"num\">Channel showed</th><th>Fixed</th><th>Note</th></tr></thead><tbody>",
        run.id,
        run.id,
        run.finished_at
            .map_or("–".to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
    );
    if items.is_empty() {
        out.push_str("<tr><td colspan=\"6\">Nothing drifted.</td></tr>");
    }
    for item in &items {
        out.push_str(&super::reconciliations::item_row(item));
    }
    out.push_str("</tbody></table></div>");
    if items.len() == PAGE as usize {
        if let Some(last) = items.last() {
            let _ = write!(
                out,
                "<p><a href=\"{base}?filter=drifting&amp;after={}\">Next page →</a></p>",
                url_part(&last.sku)
            );
        }
    }
    Ok(out)
}

/// The channel's latest runs and, for an admin, the button that starts one.
fn runs_section(viewer: &Viewer, runs: &[RunRecord], base: &str) -> String {
    let mut out = String::from("<h2>Reconciliation</h2>");
    out.push_str(&action_button(
        viewer,
        Role::Admin,
        &format!("{base}/reconcile"),
        "Start a reconciliation",
        "",
    ));
    out.push_str(&super::reconciliations::runs_table(runs));
    out
}

/// `POST /channels/{id}/reconcile`: the same request as `POST /v1/reconciliations`.
pub async fn start_reconciliation(
    State(console): State<Console>,
    viewer: Viewer,
    Path(raw): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = viewer.refusal(form.csrf.as_deref(), Role::Admin) {
        return refused;
    }
    let Ok(channel) = ChannelId::parse(raw) else {
        return html::error_page(StatusCode::NOT_FOUND, Some(&viewer), "No such channel.");
    };
    let base = format!("/channels/{}", url_part(channel.as_str()));
    let Some(reconciler) = console.app.reconciler.as_deref() else {
        return redirect(&format!("{base}?done=recon-unavailable"));
    };
    match reconciler.request(Some(&channel), "console").await {
        Ok(runs) => {
            let id = runs.first().map_or(0, |r| r.id);
            tracing::info!(caller = %viewer.caller, channel = %channel, run = id, "reconciliation started from the console");
            redirect(&format!("{base}?done=recon-started&id={id}"))
        }
        Err(crate::outbound::reconcile::RequestError::NotConnected(_)) => {
            redirect(&format!("{base}?done=recon-not-connected"))
        }
        Err(crate::outbound::reconcile::RequestError::Store(e)) => storage_error(&viewer, e),
    }
}

#[derive(Deserialize)]
pub struct ActionForm {
    csrf: Option<String>,
    back: Option<String>,
}

/// Back to the page the action came from (a console path only).
fn back_to(back: Option<&str>, default: &str) -> String {
    match back {
        Some(b) if b.starts_with("/channels") && !b.contains(['?', '#', '\\']) => b.to_string(),
        _ => default.to_string(),
    }
}

async fn letter_action(
    console: Console,
    viewer: Viewer,
    raw: String,
    form: ActionForm,
    retry: bool,
) -> Response {
    if let Some(refused) = viewer.refusal(form.csrf.as_deref(), Role::Admin) {
        return refused;
    }
    let back = back_to(form.back.as_deref(), "/channels");
    let Ok(id) = raw.parse::<i64>() else {
        return html::error_page(StatusCode::NOT_FOUND, Some(&viewer), "No such dead letter.");
    };
    let done = if retry {
        console.app.store.dead_letter_retry(id).await
    } else {
        console.app.store.dead_letter_discard(id).await
    };
    match done {
        Ok(true) => {
            tracing::info!(caller = %viewer.caller, id, retry, "dead letter handled from the console");
            redirect(&format!(
                "{back}?done={}&id={id}",
                if retry { "retried" } else { "discarded" }
            ))
        }
        Ok(false) => redirect(&format!("{back}?done=gone&id={id}")),
        Err(e) => storage_error(&viewer, e),
    }
}

/// `POST /dlq/{id}/retry`.
pub async fn retry_letter(
    State(console): State<Console>,
    viewer: Viewer,
    Path(raw): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    letter_action(console, viewer, raw, form, true).await
}

/// `POST /dlq/{id}/discard`.
pub async fn discard_letter(
    State(console): State<Console>,
    viewer: Viewer,
    Path(raw): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    letter_action(console, viewer, raw, form, false).await
}

#[derive(Deserialize)]
pub struct QuarantineQuery {
    after_id: Option<i64>,
    done: Option<String>,
    id: Option<i64>,
}

/// `GET /quarantine`.
pub async fn quarantine(
    State(console): State<Console>,
    viewer: Viewer,
    Query(query): Query<QuarantineQuery>,
) -> Response {
    let rows = match console
        .app
        .store
        .quarantine(query.after_id.unwrap_or(0), PAGE)
        .await
    {
        Ok(r) => r,
        Err(e) => return storage_error(&viewer, e),
    };
    let mut body = String::from(
        "<p class=\"hint\">Events naming a SKU, location or order stockd does not know yet. They apply by themselves once it exists; discard one to give it up for good.</p>\
         <div class=\"scroll\"><table id=\"quarantine\"><thead><tr><th class=\"num\">Id</th><th>Received</th><th>Type</th><th>Key</th>\
         <th>Status</th><th>Reason</th><th></th></tr></thead><tbody>",
    );
    if rows.is_empty() {
        body.push_str("<tr><td colspan=\"7\">The quarantine is empty.</td></tr>");
    }
    for r in &rows {
        let discard = action_button(
            &viewer,
            Role::Admin,
            &format!("/quarantine/{}/discard", r.id),
            "Discard",
            "danger",
        );
        let _ = write!(
            body,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{discard}</td></tr>",
            r.id,
            r.received_at.format("%Y-%m-%d %H:%M:%S"),
            esc(&r.kind),
            esc(&r.key),
            esc(&r.status),
            esc(&r.reason),
        );
    }
    body.push_str("</tbody></table></div>");
    if rows.len() == PAGE as usize {
        if let Some(last) = rows.last() {
            let _ = write!(
                body,
                "<p><a href=\"/quarantine?after_id={}\">Next page →</a></p>",
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
            "Quarantine",
            "/quarantine",
            Some(&viewer),
            flash.as_deref(),
            &body,
        ),
    )
}

/// `POST /quarantine/{id}/discard`.
pub async fn discard_quarantined(
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
            "No such quarantined event.",
        );
    };
    match console.app.store.discard_quarantined(id).await {
        Ok(true) => {
            tracing::info!(caller = %viewer.caller, id, "quarantined event discarded from the console");
            redirect(&format!("/quarantine?done=quarantine-discarded&id={id}"))
        }
        Ok(false) => redirect(&format!("/quarantine?done=gone&id={id}")),
        Err(e) => storage_error(&viewer, e),
    }
}
