//! The overview: the target KPIs with pass/fail, live charts of the last
//! hour, and per-channel health. KPIs are gathered by `kpis` as a list of
//! rows; each source (in-memory sync figures, the store's oversell rows, and
//! later persisted KPIs and reconciliation) adds its rows there.

use super::chart::{self, Series};
use super::html::{self, duration_s, esc, thousands};
use super::session::Viewer;
use super::Console;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use std::fmt::Write;
use stockd_core::ChannelId;
use stockd_store::console::ChannelHealth;

/// Update latency target: p95 below five seconds.
pub const LATENCY_P95_TARGET_MS: f64 = 5_000.0;

/// Whether a KPI meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Not measured (yet).
    Unknown,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Unknown => "no data",
        }
    }
}

/// One KPI against its target.
#[derive(Debug, Clone)]
pub struct KpiRow {
    pub name: &'static str,
    pub value: String,
    pub target: &'static str,
    pub verdict: Verdict,
    pub note: String,
}

/// The KPIs from what this process knows now.
pub async fn kpis(console: &Console) -> Result<Vec<KpiRow>, stockd_store::StoreError> {
    let figures = console.app.sync_kpis.figures();
    let worst = figures
        .iter()
        .filter_map(|f| f.latency_ms.map(|l| (f.channel.clone(), l.p95)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let latency = match worst {
        Some((channel, p95)) => KpiRow {
            name: "Update latency p95",
            value: duration_s(p95 / 1000.0),
            target: "< 5 s",
            verdict: if p95 < LATENCY_P95_TARGET_MS {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            note: format!("slowest channel: {channel} (since start)"),
        },
        None => KpiRow {
            name: "Update latency p95",
            value: "–".into(),
            target: "< 5 s",
            verdict: Verdict::Unknown,
            note: "no update acknowledged since start".into(),
        },
    };
    let oversold = console.app.store.oversell_totals().await?;
    let oversell = KpiRow {
        name: "Oversell rate",
        value: if oversold.lines == 0 {
            "0 %".into()
        } else {
            format!("{} oversold lines", thousands(oversold.lines as i64))
        },
        target: "< 0.5 %",
        verdict: if oversold.lines == 0 {
            Verdict::Pass
        } else {
            Verdict::Unknown
        },
        note: format!("{} units short over all time", thousands(oversold.units)),
    };
    let drift = KpiRow {
        name: "Drift",
        value: "–".into(),
        target: "< 0.2 %",
        verdict: Verdict::Unknown,
        note: "no reconciliation run yet".into(),
    };
    let cancel = KpiRow {
        name: "Cancel ratio",
        value: "–".into(),
        target: "< 1 %",
        verdict: Verdict::Unknown,
        note: "not measured yet".into(),
    };
    Ok(vec![oversell, latency, drift, cancel])
}

fn kpi_table(rows: &[KpiRow]) -> String {
    let mut out = String::from("<div class=\"kpis\">");
    for row in rows {
        let _ = write!(
            out,
            "<div class=\"kpi {}\"><div class=\"kpi-name\">{}</div><div class=\"kpi-value\">{}</div>\
             <div class=\"kpi-target\">target {} · <b>{}</b></div><div class=\"hint\">{}</div></div>",
            row.verdict.label().replace(' ', "-"),
            esc(row.name),
            esc(&row.value),
            esc(row.target),
            row.verdict.label(),
            esc(&row.note)
        );
    }
    out.push_str("</div>");
    out
}

/// The three live charts from the console's samples.
pub fn live_charts(console: &Console) -> String {
    let samples = console.live.samples();
    let mut channels: Vec<ChannelId> = samples
        .iter()
        .flat_map(|s| s.channels.iter().map(|c| c.channel.clone()))
        .collect();
    channels.sort();
    channels.dedup();
    let events = Series {
        name: "events/s".into(),
        points: samples
            .iter()
            .skip(1)
            .map(|s| (s.at, s.events_per_s))
            .collect(),
    };
    let per_channel = |pick: &dyn Fn(&super::live::ChannelSample) -> Option<f64>| -> Vec<Series> {
        channels
            .iter()
            .map(|channel| Series {
                name: channel.as_str().to_string(),
                points: samples
                    .iter()
                    .filter_map(|s| {
                        s.channels
                            .iter()
                            .find(|c| &c.channel == channel)
                            .and_then(pick)
                            .map(|v| (s.at, v))
                    })
                    .collect(),
            })
            .collect()
    };
    let mut out = String::from("<div class=\"charts\">");
    out.push_str(&chart::line_chart(
        "chart-events",
        "Events applied",
        "per second",
        &[events],
    ));
    out.push_str(&chart::line_chart(
        "chart-latency",
        "Update latency p95",
        "ms, recent updates",
        &per_channel(&|c| c.latency_p95_ms),
    ));
    out.push_str(&chart::line_chart(
        "chart-lag",
        "Outbox lag",
        "s, oldest unsent update",
        &per_channel(&|c| Some(c.lag_s)),
    ));
    out.push_str("</div>");
    out
}

async fn health_table(console: &Console) -> Result<String, stockd_store::StoreError> {
    let channels = console.app.store.channels().await?;
    let ids: Vec<ChannelId> = channels.iter().map(|c| c.id.clone()).collect();
    let health: Vec<ChannelHealth> = console.app.store.channel_health(&ids).await?;
    let figures = console.app.sync_kpis.figures();
    let now = Utc::now();
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"health\"><thead><tr><th>Channel</th><th>Kind</th><th>Connected</th>\
         <th class=\"num\">Lagging</th><th>Oldest unsent</th><th class=\"num\">Held by budget</th>\
         <th class=\"num\">Dead letters</th><th class=\"num\">Pushes</th><th class=\"num\">Failures</th>\
         <th class=\"num\">Rate limited</th><th>Last reconciliation</th></tr></thead><tbody>",
    );
    if channels.is_empty() {
        out.push_str("<tr><td colspan=\"11\">No channels yet.</td></tr>");
    }
    for (channel, h) in channels.iter().zip(&health) {
        let connected = console.app.connectors.contains_key(&channel.id);
        let f = figures.iter().find(|f| f.channel == channel.id);
        let oldest = h.oldest_unsent.map_or("in sync".to_string(), |t| {
            format!(
                "{} ago",
                duration_s(((now - t).num_milliseconds() as f64 / 1000.0).max(0.0))
            )
        });
        let _ = write!(
            out,
            "<tr><td><a href=\"/channels/{}\">{}</a>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>–</td></tr>",
            html::url_part(channel.id.as_str()),
            esc(channel.id.as_str()),
            if channel.enabled { "" } else { " <span class=\"tag\">disabled</span>" },
            esc(channel.kind.as_str()),
            if connected { "<span class=\"ok\">yes</span>" } else { "<span class=\"bad\">no</span>" },
            thousands(h.lagging as i64),
            oldest,
            thousands(h.held_by_budget as i64),
            if h.dead_letters > 0 { " bad" } else { "" },
            thousands(h.dead_letters as i64),
            f.map_or(0, |f| f.pushes),
            f.map_or(0, |f| f.failures),
            f.map_or(0, |f| f.rate_limited),
        );
    }
    out.push_str("</tbody></table></div>");
    Ok(out)
}

async fn live_section(console: &Console) -> Result<String, stockd_store::StoreError> {
    let mut out = String::new();
    out.push_str("<h2>Last hour</h2>");
    out.push_str(&live_charts(console));
    out.push_str("<h2>Channels</h2>");
    out.push_str(&health_table(console).await?);
    Ok(out)
}

fn storage_error(viewer: &Viewer, e: stockd_store::StoreError) -> Response {
    tracing::error!(error = %e, "console read failed");
    html::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(viewer),
        "The store did not answer; try again in a moment.",
    )
}

/// `GET /`.
pub async fn page(State(console): State<Console>, viewer: Viewer) -> Response {
    let kpis = match kpis(&console).await {
        Ok(k) => k,
        Err(e) => return storage_error(&viewer, e),
    };
    let live = match live_section(&console).await {
        Ok(l) => l,
        Err(e) => return storage_error(&viewer, e),
    };
    let mut body = kpi_table(&kpis);
    let _ = write!(
        body,
        "<section id=\"live\" data-refresh=\"/overview/live\" data-every=\"{}\">{live}</section>",
        super::live::SAMPLE_EVERY.as_millis()
    );
    html::html_response(
        StatusCode::OK,
        html::page("Overview", "/", Some(&viewer), None, &body),
    )
}

/// `GET /overview/live`: the charts and the health table, for the page's script.
pub async fn live_fragment(State(console): State<Console>, viewer: Viewer) -> Response {
    match live_section(&console).await {
        Ok(fragment) => html::html_response(StatusCode::OK, fragment),
        Err(e) => storage_error(&viewer, e),
    }
}
