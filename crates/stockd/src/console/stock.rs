//! Stock pages: search by SKU prefix, GTIN or title (`/stock?q=`), and one
//! variant (`/stock/{sku}`): quantities per location, inbound with ETAs,
//! returns waiting for inspection, kits, what each channel may show with its
//! explain trail and push state, then the ledger history.

use super::html::{self, esc, thousands, url_part};
use super::session::Viewer;
use super::Console;
use crate::api::stock::stock_detail;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::fmt::Write;
use stockd_core::availability::{Availability, ExplainStep, RuleName};
use stockd_core::rules::RuleSource;
use stockd_core::{Sku, Variant};
use stockd_store::{LedgerQuery, StoreError};

/// Search results shown at most.
pub const SEARCH_LIMIT: u32 = 50;
/// Ledger rows shown on a SKU page.
pub const HISTORY_LIMIT: u32 = 50;

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    /// Only the results table (for the page's script).
    fragment: Option<u8>,
}

fn storage_error(viewer: &Viewer, e: StoreError) -> Response {
    tracing::error!(error = %e, "console read failed");
    html::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(viewer),
        "The store did not answer; try again in a moment.",
    )
}

fn results_table(query: &str, found: &[Variant]) -> String {
    let mut out = String::from("<div id=\"results\">");
    if found.is_empty() {
        if !query.is_empty() {
            let _ = write!(out, "<p>No variant matches <q>{}</q>.</p>", esc(query));
        }
    } else {
        out.push_str(
            "<div class=\"scroll\"><table><thead><tr><th>SKU</th><th>Title</th><th>GTIN</th></tr></thead><tbody>",
        );
        for v in found {
            let _ = write!(
                out,
                "<tr><td><a href=\"/stock/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                url_part(v.sku.as_str()),
                esc(v.sku.as_str()),
                esc(v.title.as_deref().unwrap_or("")),
                esc(v.gtin.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</tbody></table></div>");
        if found.len() == SEARCH_LIMIT as usize {
            let _ = write!(
                out,
                "<p class=\"hint\">First {SEARCH_LIMIT} matches; type more to narrow.</p>"
            );
        }
    }
    out.push_str("</div>");
    out
}

/// `GET /stock?q=`.
pub async fn search(
    State(console): State<Console>,
    viewer: Viewer,
    Query(query): Query<SearchQuery>,
) -> Response {
    let q = query.q.unwrap_or_default();
    let q = q.trim();
    let found = if q.is_empty() {
        Vec::new()
    } else {
        match console.app.store.search_variants(q, SEARCH_LIMIT).await {
            Ok(found) => found,
            Err(e) => return storage_error(&viewer, e),
        }
    };
    let table = results_table(q, &found);
    if query.fragment == Some(1) {
        return html::html_response(StatusCode::OK, table);
    }
    let body = format!(
        "<form class=\"search\" method=\"get\" action=\"/stock\" role=\"search\">\
         <label for=\"q\" class=\"sr-only\">SKU, title or GTIN</label>\
         <input id=\"q\" name=\"q\" type=\"search\" value=\"{}\" placeholder=\"SKU, title or GTIN\" autocomplete=\"off\" autofocus data-live-search=\"/stock\">\
         <button>Search</button></form>{table}",
        esc(q)
    );
    html::html_response(
        StatusCode::OK,
        html::page("Stock", "/stock", Some(&viewer), None, &body),
    )
}

fn availability_label(a: Availability) -> &'static str {
    match a {
        Availability::InStock => "in stock",
        Availability::OutOfStock => "out of stock",
        Availability::Backorder => "backorder",
    }
}

fn rule_label(rule: RuleName) -> &'static str {
    match rule {
        RuleName::SafetyStock => "safety stock",
        RuleName::Percent => "percent",
        RuleName::MaxExposed => "cap (max exposed)",
        RuleName::MinListed => "minimum listed",
    }
}

fn source_label(source: RuleSource, channel: &str) -> String {
    match source {
        RuleSource::Builtin => "built-in".to_string(),
        RuleSource::Default => "defaults".to_string(),
        RuleSource::Channel => format!("channels.{channel}"),
        RuleSource::Override(i) => format!("overrides[{i}]"),
    }
}

/// One explain step as a sentence with its numbers.
fn explain_step(step: &ExplainStep, channel: &str) -> String {
    match step {
        ExplainStep::Pool { locations, pool } => {
            let parts: Vec<String> = locations
                .iter()
                .map(|l| {
                    format!(
                        "{} {} on hand − {} reserved = {}",
                        esc(l.location.as_str()),
                        l.on_hand,
                        l.reserved,
                        l.net_qty
                    )
                })
                .collect();
            format!(
                "<b>Pool {pool}</b>: {}",
                if parts.is_empty() {
                    "no stock at the channel's locations".to_string()
                } else {
                    parts.join("; ")
                }
            )
        }
        ExplainStep::Kit {
            prebuilt_qty,
            components,
            pool,
            ..
        } => {
            let parts: Vec<String> = components
                .iter()
                .map(|c| {
                    format!(
                        "<a href=\"/stock/{}\">{}</a> {} ÷ {} = {} kits",
                        url_part(c.sku.as_str()),
                        esc(c.sku.as_str()),
                        c.pool,
                        c.qty_per_kit,
                        c.kits
                    )
                })
                .collect();
            format!(
                "<b>Kit pool {pool}</b>: {prebuilt_qty} pre-built + scarcest component ({})",
                parts.join("; ")
            )
        }
        ExplainStep::Rule {
            rule,
            value,
            source,
            before,
            after,
        } => format!(
            "<b>{}</b> {} from <code>{}</code>: {before} → {after}",
            rule_label(*rule),
            value.map_or("none".to_string(), |v| v.to_string()),
            esc(&source_label(*source, channel)),
        ),
        ExplainStep::NeverNegative { before, after } => {
            format!("<b>Never negative</b>: {before} → {after}")
        }
        ExplainStep::Preallocation {
            variant_pool,
            low_stock_threshold,
            position,
            listing_rank,
            sold_qty,
            left_before,
            before,
            after,
        } => format!(
            "<b>Pre-allocation</b> (pool {variant_pool} ≤ threshold {low_stock_threshold}): place {position}{}{}, {left_before} left before it: {before} → {after}",
            listing_rank.map_or(String::new(), |r| format!(", rank {r}")),
            sold_qty.map_or(String::new(), |s| format!(", sold {s}")),
        ),
        ExplainStep::ChannelLimit {
            limit,
            before,
            after,
        } => format!("<b>Channel limit</b> {limit}: {before} → {after}"),
        ExplainStep::Eta {
            po_id,
            location,
            eta,
            days_to_eta,
            ship_window_days,
        } => format!(
            "<b>Backorder</b>: purchase order {} arrives at {} on {eta} (in {days_to_eta} days); ships in {}–{} days",
            esc(po_id.as_str()),
            esc(location.as_str()),
            ship_window_days.0,
            ship_window_days.1
        ),
    }
}

/// `GET /stock/{sku}`.
pub async fn detail(
    State(console): State<Console>,
    viewer: Viewer,
    Path(raw): Path<String>,
) -> Response {
    let not_found = |viewer: &Viewer| {
        html::error_page(
            StatusCode::NOT_FOUND,
            Some(viewer),
            &format!("There is no variant with SKU {raw:?}."),
        )
    };
    let Ok(sku) = Sku::parse(raw.clone()) else {
        return not_found(&viewer);
    };
    match render_detail(&console, &viewer, &sku).await {
        Ok(Some(body)) => html::html_response(
            StatusCode::OK,
            html::page(sku.as_str(), "/stock", Some(&viewer), None, &body),
        ),
        Ok(None) => not_found(&viewer),
        Err(e) => storage_error(&viewer, e),
    }
}

async fn render_detail(
    console: &Console,
    _viewer: &Viewer,
    sku: &Sku,
) -> Result<Option<String>, StoreError> {
    let store = &*console.app.store;
    let Some(variant) = store.variant(sku).await? else {
        return Ok(None);
    };
    let detail = match stock_detail(store, sku).await {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(None),
        Err(crate::error::ApiError::Storage(e)) => return Err(e),
        Err(e) => return Err(StoreError::Database(e.to_string())),
    };
    let view = &detail.view;
    let mut out = String::new();
    let _ = write!(
        out,
        "<p class=\"lead\">{}{}{}</p>",
        esc(variant.title.as_deref().unwrap_or("(no title)")),
        variant
            .gtin
            .as_deref()
            .map_or(String::new(), |g| format!(" · GTIN {}", esc(g))),
        variant
            .product_id
            .as_deref()
            .map_or(String::new(), |p| format!(" · product {}", esc(p))),
    );
    let _ = write!(
        out,
        "<div class=\"figures\"><div><span>On hand</span><b id=\"on-hand\">{}</b></div><div><span>Reserved</span><b>{}</b></div>\
         <div><span>Available</span><b id=\"available\">{}</b></div><div><span>Returns to inspect</span><b>{}</b></div>\
         <div class=\"{}\"><span>Oversold</span><b>{}</b></div></div>",
        thousands(view.on_hand),
        thousands(view.reserved),
        thousands(view.available),
        thousands(view.pending_return),
        if view.oversold > 0 { "bad" } else { "" },
        thousands(view.oversold),
    );

    out.push_str("<h2>Channels</h2>");
    if detail.channels.is_empty() {
        out.push_str("<p>Not listed on any enabled channel.</p>");
    }
    out.push_str("<div class=\"channels\">");
    for c in &detail.channels {
        let rows = store
            .outbox_rows(&c.channel, std::slice::from_ref(sku))
            .await?;
        let push = match rows.first() {
            None => "no outbox row yet".to_string(),
            Some(r) if r.parked => format!(
                "<span class=\"bad\">dead-lettered</span>: {}",
                esc(r.last_error.as_deref().unwrap_or(""))
            ),
            Some(r) => {
                let pushed = r.pushed.as_ref().map_or("nothing yet".to_string(), |p| {
                    format!("{} ({})", p.quantity, availability_label(p.availability))
                });
                let at = r.pushed_at.map_or(String::new(), |t| {
                    format!(" at {}", t.format("%Y-%m-%d %H:%M:%S UTC"))
                });
                let state = if r.dirty_since.is_some() {
                    format!(
                        "<span class=\"warn\">update pending</span>{}",
                        r.last_error
                            .as_deref()
                            .map_or(String::new(), |e| format!(" ({})", esc(e)))
                    )
                } else {
                    "<span class=\"ok\">in sync</span>".to_string()
                };
                format!("last acknowledged {pushed}{at} · {state}")
            }
        };
        let _ = write!(
            out,
            "<section class=\"card channel\" data-channel=\"{}\"><h3><a href=\"/channels/{}\">{}</a> \
             <span class=\"qty\">{}</span> <span class=\"tag\">{}</span>{}</h3>\
             <ol class=\"explain\">",
            esc(c.channel.as_str()),
            url_part(c.channel.as_str()),
            esc(c.channel.as_str()),
            c.quantity,
            availability_label(c.availability),
            c.eta.map_or(String::new(), |d| format!(" <span class=\"tag\">ETA {d}</span>")),
        );
        for step in &c.explain {
            let _ = write!(out, "<li>{}</li>", explain_step(step, c.channel.as_str()));
        }
        let _ = write!(out, "</ol><p class=\"hint\">Push: {push}</p></section>");
    }
    out.push_str("</div>");

    out.push_str("<h2>Locations</h2><div class=\"scroll\"><table><thead><tr><th>Location</th><th class=\"num\">On hand</th>\
                  <th class=\"num\">Reserved</th><th class=\"num\">Available</th><th class=\"num\">Returns</th></tr></thead><tbody>");
    if view.locations.is_empty() {
        out.push_str("<tr><td colspan=\"5\">No stock recorded.</td></tr>");
    }
    for l in &view.locations {
        let _ = write!(
            out,
            "<tr><td>{}{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(l.location.as_str()),
            if l.sellable { "" } else { " <span class=\"tag\">not sellable</span>" },
            thousands(l.on_hand),
            thousands(l.reserved),
            thousands(l.available),
            thousands(l.pending_return)
        );
    }
    out.push_str("</tbody></table></div>");

    out.push_str("<h2>Inbound</h2>");
    if view.inbound.is_empty() {
        out.push_str("<p>No open purchase orders.</p>");
    } else {
        out.push_str("<div class=\"scroll\"><table><thead><tr><th>Purchase order</th><th>Location</th><th class=\"num\">Quantity</th><th>ETA</th></tr></thead><tbody>");
        for i in &view.inbound {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}{}</td></tr>",
                esc(i.po_id.as_str()),
                esc(i.location.as_str()),
                thousands(i.qty),
                i.eta.map_or("none".to_string(), |d| d.to_string()),
                if i.confirmed { "" } else { " (unconfirmed)" }
            );
        }
        out.push_str("</tbody></table></div>");
    }

    let bundles = store.bundles().await?;
    let made_of = bundles.iter().find(|b| &b.kit == sku);
    let part_of: Vec<_> = bundles
        .iter()
        .filter(|b| b.components.iter().any(|c| &c.sku == sku))
        .collect();
    if made_of.is_some() || !part_of.is_empty() {
        out.push_str("<h2>Kits</h2><ul>");
        if let Some(kit) = made_of {
            let parts: Vec<String> = kit
                .components
                .iter()
                .map(|c| {
                    format!(
                        "{} × <a href=\"/stock/{}\">{}</a>",
                        c.qty,
                        url_part(c.sku.as_str()),
                        esc(c.sku.as_str())
                    )
                })
                .collect();
            let _ = write!(out, "<li>Made of {}</li>", parts.join(", "));
        }
        for kit in part_of {
            let qty = kit
                .components
                .iter()
                .find(|c| &c.sku == sku)
                .map_or(0, |c| c.qty);
            let _ = write!(
                out,
                "<li>{qty} in each <a href=\"/stock/{}\">{}</a></li>",
                url_part(kit.kit.as_str()),
                esc(kit.kit.as_str())
            );
        }
        out.push_str("</ul>");
    }

    out.push_str("<h2>Open returns</h2>");
    let mut open = Vec::new();
    for rma in store.open_returns_of(sku, RETURNS_SHOWN).await? {
        if let Some(r) = store.return_record(&rma).await? {
            open.push(r);
        }
    }
    out.push_str(&super::returns::returns_table(
        "sku-returns",
        &open,
        "No open returns of this SKU.",
    ));

    out.push_str("<h2>Ledger</h2>");
    let seqs = store.ledger_seqs_of(sku, HISTORY_LIMIT).await?;
    let mut rows = match seqs.last() {
        Some(oldest) => {
            store
                .ledger(&LedgerQuery {
                    sku: Some(sku.clone()),
                    after_seq: oldest.saturating_sub(1),
                    limit: HISTORY_LIMIT,
                })
                .await?
        }
        None => Vec::new(),
    };
    rows.reverse();
    if rows.is_empty() {
        out.push_str("<p>No events yet.</p>");
    } else {
        out.push_str("<div class=\"scroll\"><table><thead><tr><th class=\"num\">Seq</th><th>Received</th><th>Type</th><th>Key</th><th>Change here</th></tr></thead><tbody>");
        for r in &rows {
            let changes: Vec<String> = r
                .changes
                .iter()
                .filter(|d| &d.sku == sku)
                .map(|d| {
                    serde_json::to_value(d)
                        .map(|v| change_text(&v))
                        .unwrap_or_default()
                })
                .collect();
            let _ = write!(
                out,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                r.seq,
                r.received_at.format("%Y-%m-%d %H:%M:%S"),
                esc(&r.kind),
                esc(&r.key),
                esc(&changes.join("; "))
            );
        }
        out.push_str("</tbody></table></div>");
        if rows.len() == HISTORY_LIMIT as usize {
            let _ = write!(
                out,
                "<p class=\"hint\">The newest {HISTORY_LIMIT} events; the whole trail is at <code>GET /v1/ledger?sku={}</code>.</p>",
                esc(&url_part(sku.as_str()))
            );
        }
    }
    out.push_str("<h2>Pushes</h2>");
    let pushes = store.recent_pushes_of(sku, HISTORY_LIMIT).await?;
    out.push_str(&push_table(&pushes));
    if pushes.len() == HISTORY_LIMIT as usize {
        let _ = write!(
            out,
            "<p class=\"hint\">The newest {HISTORY_LIMIT} attempts; the whole audit trail is at <code>GET /v1/pushes?sku={}</code>.</p>",
            esc(&url_part(sku.as_str()))
        );
    }
    Ok(Some(out))
}

/// RMAs shown on a SKU's page.
const RETURNS_SHOWN: u32 = 20;

/// Push attempts, newest first: what was sent and how the channel answered.
fn push_table(pushes: &[stockd_store::kpis::PushAttempt]) -> String {
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"pushes\"><thead><tr><th>At</th><th>Channel</th><th class=\"num\">Sent</th>\
         <th>Outcome</th><th class=\"num\">Channel count</th><th class=\"num\">Latency</th><th class=\"num\">Cause seq</th>\
         <th class=\"num\">Rules</th><th>Message</th></tr></thead><tbody>",
    );
    if pushes.is_empty() {
        out.push_str("<tr><td colspan=\"9\">Nothing pushed yet.</td></tr>");
    }
    for p in pushes {
        let sent = match (
            p.sent.get("quantity").and_then(serde_json::Value::as_i64),
            p.sent
                .get("availability")
                .and_then(serde_json::Value::as_str),
        ) {
            (Some(q), Some(a)) => format!("{q} ({})", a.replace('_', " ")),
            (Some(q), None) => q.to_string(),
            _ => p.sent.to_string(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td><a href=\"/channels/{}\">{}</a></td><td class=\"num\">{}</td><td class=\"{}\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}{}</td></tr>",
            p.at.format("%Y-%m-%d %H:%M:%S"),
            url_part(p.channel.as_str()),
            esc(p.channel.as_str()),
            esc(&sent),
            if p.outcome == "applied" { "ok" } else { "bad" },
            esc(&p.outcome.replace('_', " ")),
            p.channel_quantity.map_or("–".to_string(), |q| q.to_string()),
            p.latency_ms.map_or("–".to_string(), |l| html::duration_s(l / 1000.0)),
            p.caused_seq.map_or("–".to_string(), |s| s.to_string()),
            p.rules_version.map_or("–".to_string(), |v| v.to_string()),
            p.code.as_deref().map_or(String::new(), |c| format!("<code>{}</code> ", esc(c))),
            esc(p.message.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A stock delta as text: its location and every non-zero counter change.
fn change_text(delta: &serde_json::Value) -> String {
    let Some(map) = delta.as_object() else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(loc) = map.get("location").and_then(|v| v.as_str()) {
        parts.push(format!("{loc}:"));
    }
    for (key, value) in map {
        if key == "sku" || key == "location" {
            continue;
        }
        if let Some(n) = value.as_i64() {
            if n != 0 {
                parts.push(format!("{key} {n:+}"));
            }
        }
    }
    parts.join(" ")
}
