//! Reconciliation runs: the runs table (on a channel's page) and one run's
//! page with its counts and its listings per class, read from the same
//! store calls as `GET /v1/reconciliations/{id}` and its items.

use super::channels::{level_text, storage_error, PAGE};
use super::html::{self, esc, thousands, url_part};
use super::session::Viewer;
use super::Console;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::fmt::Write;
use stockd_store::reconcile::{DriftClass, RunItem, RunRecord};

/// The classes of listings that were not in sync, with their labels.
const CLASSES: [(DriftClass, &str); 5] = [
    (DriftClass::ChannelDiffers, "Channel differs"),
    (DriftClass::MissingOnChannel, "Missing on channel"),
    (DriftClass::UnknownToStockd, "Unknown to stockd"),
    (DriftClass::Pending, "Pending"),
    (DriftClass::Unreadable, "Unreadable"),
];

fn count_of(run: &RunRecord, class: DriftClass) -> u64 {
    let c = &run.counts;
    match class {
        DriftClass::InSync => c.in_sync,
        DriftClass::ChannelDiffers => c.channel_differs,
        DriftClass::MissingOnChannel => c.missing_on_channel,
        DriftClass::UnknownToStockd => c.unknown_to_stockd,
        DriftClass::Pending => c.pending,
        DriftClass::Unreadable => c.unreadable,
    }
}

fn class_label(class: DriftClass) -> &'static str {
    CLASSES
        .iter()
        .find(|(c, _)| *c == class)
        .map_or("In sync", |(_, label)| label)
}

/// Runs, newest first, with their counts per class.
pub fn runs_table(runs: &[RunRecord]) -> String {
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"runs\"><thead><tr><th class=\"num\">Run</th><th>Started by</th><th>Status</th>\
         <th>Created</th><th class=\"num\">Checked</th><th class=\"num\">In sync</th><th class=\"num\">Differs</th>\
         <th class=\"num\">Missing</th><th class=\"num\">Unknown</th><th class=\"num\">Pending</th><th class=\"num\">Unreadable</th>\
         <th class=\"num\">Drift</th><th class=\"num\">Fixed</th></tr></thead><tbody>",
    );
    if runs.is_empty() {
        out.push_str("<tr><td colspan=\"13\">No reconciliation runs yet.</td></tr>");
    }
    for r in runs {
        let _ = write!(
            out,
            "<tr data-run=\"{}\"><td class=\"num\"><a href=\"/reconciliations/{}\">{}</a></td><td>{}</td><td>{}{}</td><td>{}</td>\
             <td class=\"num\">{} / {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2} %</td><td class=\"num\">{}</td></tr>",
            r.id,
            r.id,
            r.id,
            esc(&r.trigger),
            r.status.as_str(),
            r.error
                .as_deref()
                .map_or(String::new(), |e| format!(": {}", esc(e))),
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            thousands(r.checked as i64),
            thousands(r.total as i64),
            thousands(r.counts.in_sync as i64),
            thousands(r.counts.channel_differs as i64),
            thousands(r.counts.missing_on_channel as i64),
            thousands(r.counts.unknown_to_stockd as i64),
            thousands(r.counts.pending as i64),
            thousands(r.counts.unreadable as i64),
            r.drift_rate() * 100.0,
            thousands(r.fixed as i64),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// One item as a table row: SKU, class, expected, observed, fixed, note.
pub fn item_row(item: &RunItem) -> String {
    // A listing unknown to stockd carries the channel's id, not a SKU page.
    let sku = if item.class == DriftClass::UnknownToStockd {
        esc(&item.sku).to_string()
    } else {
        format!(
            "<a href=\"/stock/{}\">{}</a>",
            url_part(&item.sku),
            esc(&item.sku)
        )
    };
    format!(
        "<tr><td>{sku}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
        class_label(item.class),
        esc(&level_text(item.expected.as_ref())),
        esc(&level_text(item.observed.as_ref())),
        if item.fixed { "queued again" } else { "" },
        esc(item.note.as_deref().unwrap_or("")),
    )
}

#[derive(Deserialize)]
pub struct RunQuery {
    class: Option<String>,
    after: Option<String>,
}

/// `GET /reconciliations/{id}?class=…`: one run and its listings of a class.
pub async fn run_page(
    State(console): State<Console>,
    viewer: Viewer,
    Path(raw): Path<String>,
    Query(query): Query<RunQuery>,
) -> Response {
    let not_found =
        |viewer: &Viewer| html::error_page(StatusCode::NOT_FOUND, Some(viewer), "No such run.");
    let Ok(id) = raw.parse::<i64>() else {
        return not_found(&viewer);
    };
    let store = &*console.app.store;
    let run = match store.recon_run(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(&viewer),
        Err(e) => return storage_error(&viewer, e),
    };
    // The asked class, else the first class with listings.
    let class = query
        .class
        .as_deref()
        .and_then(DriftClass::parse)
        .or_else(|| {
            CLASSES
                .iter()
                .map(|(c, _)| *c)
                .find(|c| count_of(&run, *c) > 0)
        })
        .unwrap_or(DriftClass::ChannelDiffers);
    let after = query.after.as_deref().filter(|a| !a.is_empty());
    let items = match store.recon_items(id, Some(class), after, PAGE).await {
        Ok(i) => i,
        Err(e) => return storage_error(&viewer, e),
    };
    let mut body = format!(
        "<p class=\"lead\">Channel <a href=\"/channels/{}\">{}</a> · started by {} · {}{}</p>",
        url_part(run.channel.as_str()),
        esc(run.channel.as_str()),
        esc(&run.trigger),
        run.status.as_str(),
        if run.auto_fix {
            " · drift is queued again"
        } else {
            " · report only"
        },
    );
    body.push_str(&runs_table(std::slice::from_ref(&run)));
    let base = format!("/reconciliations/{id}");
    body.push_str("<nav class=\"filters\" aria-label=\"Class\">");
    for (c, label) in CLASSES {
        let current = if c == class {
            " aria-current=\"true\""
        } else {
            ""
        };
        let _ = write!(
            body,
            "<a href=\"{base}?class={}\"{current}>{label} ({})</a>",
            c.as_str(),
            thousands(count_of(&run, c) as i64)
        );
    }
    body.push_str("</nav><div class=\"scroll\"><table id=\"items\"><thead><tr><th>SKU</th><th>Class</th>\
                   <th class=\"num\">stockd expected</th><th class=\"num\">Channel showed</th><th>Fixed</th><th>Note</th></tr></thead><tbody>");
    if items.is_empty() {
        let _ = write!(
            body,
            "<tr><td colspan=\"6\">No listings of class {}.</td></tr>",
            class_label(class)
        );
    }
    for item in &items {
        body.push_str(&item_row(item));
    }
    body.push_str("</tbody></table></div>");
    if items.len() == PAGE as usize {
        if let Some(last) = items.last() {
            let _ = write!(
                body,
                "<p><a href=\"{base}?class={}&amp;after={}\">Next page →</a></p>",
                class.as_str(),
                url_part(&last.sku)
            );
        }
    }
    html::html_response(
        StatusCode::OK,
        html::page(
            &format!("Reconciliation run {id}"),
            "/channels",
            Some(&viewer),
            None,
            &body,
        ),
    )
}
