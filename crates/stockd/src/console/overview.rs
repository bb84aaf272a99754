//! The overview: the four target KPIs with pass/fail from the persisted
//! daily figures (what `GET /v1/kpis` returns, over the last 30 days), daily
//! charts of those figures, live charts of the last hour, and per-channel
//! health with the last reconciliation. The live part reaches the page as
//! server-sent events (`stream`); without script the page is complete as
//! served and reloads itself.

use super::chart::{self, Series};
use super::html::{self, duration_s, esc, thousands};
use super::session::Viewer;
use super::Console;
use crate::api::kpis::{
    kpis_by_channel, ChannelKpis, TARGET_CANCEL_RATIO, TARGET_DRIFT_RATE, TARGET_LATENCY_P95_MS,
    TARGET_OVERSELL_RATE,
};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;
use stockd_core::ChannelId;
use stockd_store::console::ChannelHealth;
use stockd_store::reconcile::RunRecord;

/// Days the KPIs and daily charts cover (as `GET /v1/kpis` by default).
pub const KPI_DAYS: i64 = 30;
/// One event stream lasts this long; the browser then reconnects (and the
/// session is checked again by the extractor).
pub const STREAM_FOR: Duration = Duration::from_secs(300);

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

    /// A figure passes below its target (as `GET /v1/kpis` judges it).
    fn of(value: Option<f64>, target: f64) -> Verdict {
        match value {
            Some(v) if v < target => Verdict::Pass,
            Some(_) => Verdict::Fail,
            None => Verdict::Unknown,
        }
    }
}

/// One KPI against its target.
#[derive(Debug, Clone)]
pub struct KpiRow {
    pub id: &'static str,
    pub name: &'static str,
    pub value: String,
    pub target: String,
    pub verdict: Verdict,
    pub note: String,
}

fn percent(ratio: f64) -> String {
    format!("{:.2} %", ratio * 100.0)
}

/// The persisted figures of the last `KPI_DAYS` days, per channel.
async fn persisted(console: &Console) -> Result<Vec<ChannelKpis>, stockd_store::StoreError> {
    let to = Utc::now().date_naive();
    let from = to - chrono::Duration::days(KPI_DAYS - 1);
    kpis_by_channel(&*console.app.store, from, to, None).await
}

/// The four KPIs over every channel: rates from the summed counts; latency
/// and drift of the worst channel (each channel must meet its target).
pub fn kpis(by_channel: &[ChannelKpis]) -> Vec<KpiRow> {
    let (mut order_lines, mut oversold, mut cancels) = (0u64, 0u64, 0u64);
    for k in by_channel {
        order_lines += k.total.order_lines;
        oversold += k.total.oversold_lines;
        cancels += k.total.stock_cancels;
    }
    let ratio = |part: u64| (order_lines > 0).then(|| part as f64 / order_lines as f64);
    let period = format!("last {KPI_DAYS} days");
    let oversell_rate = ratio(oversold);
    let oversell = KpiRow {
        id: "kpi-oversell",
        name: "Oversell rate",
        value: oversell_rate.map_or("–".into(), percent),
        target: format!("< {}", percent(TARGET_OVERSELL_RATE)),
        verdict: Verdict::of(oversell_rate, TARGET_OVERSELL_RATE),
        note: if order_lines == 0 {
            format!("no order lines in the {period}")
        } else {
            format!(
                "{} of {} order lines oversold, {period}",
                thousands(oversold as i64),
                thousands(order_lines as i64)
            )
        },
    };
    let worst_latency = by_channel
        .iter()
        .filter_map(|k| k.total.latency_ms.p95.map(|p| (&k.channel, p)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let latency = KpiRow {
        id: "kpi-latency",
        name: "Update latency p95",
        value: worst_latency.map_or("–".into(), |(_, p)| duration_s(p / 1000.0)),
        target: format!("< {}", duration_s(TARGET_LATENCY_P95_MS / 1000.0)),
        verdict: Verdict::of(worst_latency.map(|(_, p)| p), TARGET_LATENCY_P95_MS),
        note: match worst_latency {
            Some((channel, _)) => format!("slowest channel: {channel}, {period}"),
            None => format!("no update acknowledged in the {period}"),
        },
    };
    let worst_drift = by_channel
        .iter()
        .filter_map(|k| k.drift_rate.map(|d| (&k.channel, d)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let drift = KpiRow {
        id: "kpi-drift",
        name: "Drift",
        value: worst_drift.map_or("–".into(), |(_, d)| percent(d)),
        target: format!("< {}", percent(TARGET_DRIFT_RATE)),
        verdict: Verdict::of(worst_drift.map(|(_, d)| d), TARGET_DRIFT_RATE),
        note: match worst_drift {
            Some((channel, _)) => format!("most drift: {channel}, its latest reconciliation"),
            None => format!("no reconciliation finished in the {period}"),
        },
    };
    let cancel_ratio = ratio(cancels);
    let cancel = KpiRow {
        id: "kpi-cancel",
        name: "Cancel ratio",
        value: cancel_ratio.map_or("–".into(), percent),
        target: format!("< {}", percent(TARGET_CANCEL_RATIO)),
        verdict: Verdict::of(cancel_ratio, TARGET_CANCEL_RATIO),
        note: if order_lines == 0 {
            format!("no order lines in the {period}")
        } else {
            format!(
                "{} order lines cancelled for lack of stock, {period}",
                thousands(cancels as i64)
            )
        },
    };
    vec![oversell, latency, drift, cancel]
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Daily charts: oversell rate and cancel ratio over all channels, update
/// latency p95 and pushes per channel.
pub fn daily_charts(by_channel: &[ChannelKpis]) -> String {
    // Per day over all channels: (order lines, oversold, cancels).
    let mut totals: BTreeMap<NaiveDate, (u64, u64, u64)> = BTreeMap::new();
    for k in by_channel {
        for d in &k.daily {
            let t = totals.entry(d.day).or_default();
            t.0 += d.sums.order_lines;
            t.1 += d.sums.oversold_lines;
            t.2 += d.sums.stock_cancels;
        }
    }
    let rate = |pick: fn(&(u64, u64, u64)) -> u64| -> Vec<(DateTime<Utc>, f64)> {
        totals
            .iter()
            .filter(|(_, t)| t.0 > 0)
            .map(|(day, t)| (midnight(*day), pick(t) as f64 * 100.0 / t.0 as f64))
            .collect()
    };
    let rates = [
        Series {
            name: "oversell rate".into(),
            points: rate(|t| t.1),
        },
        Series {
            name: "cancel ratio".into(),
            points: rate(|t| t.2),
        },
    ];
    let per_channel = |pick: &dyn Fn(&crate::api::kpis::Day) -> Option<f64>| -> Vec<Series> {
        by_channel
            .iter()
            .filter(|k| !k.daily.is_empty())
            .map(|k| Series {
                name: k.channel.as_str().to_string(),
                points: k
                    .daily
                    .iter()
                    .filter_map(|d| pick(d).map(|v| (midnight(d.day), v)))
                    .collect(),
            })
            .collect()
    };
    let mut out = String::from("<div class=\"charts\">");
    out.push_str(&chart::daily_chart(
        "chart-daily-rates",
        "Oversell rate and cancel ratio",
        "% of order lines, per day",
        &rates,
    ));
    out.push_str(&chart::daily_chart(
        "chart-daily-latency",
        "Update latency p95",
        "ms, per day",
        &per_channel(&|d| d.sums.latency_ms.p95),
    ));
    out.push_str(&chart::daily_chart(
        "chart-daily-pushes",
        "Pushes",
        "per day",
        &per_channel(&|d| Some(d.sums.pushes as f64)),
    ));
    out.push_str("</div>");
    out
}

fn kpi_table(rows: &[KpiRow]) -> String {
    let mut out = String::from("<div class=\"kpis\">");
    for row in rows {
        let _ = write!(
            out,
            "<div class=\"kpi {}\" id=\"{}\"><div class=\"kpi-name\">{}</div><div class=\"kpi-value\">{}</div>\
             <div class=\"kpi-target\">target {} · <b>{}</b></div><div class=\"hint\">{}</div></div>",
            row.verdict.label().replace(' ', "-"),
            row.id,
            esc(row.name),
            esc(&row.value),
            esc(&row.target),
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
    let latest: Vec<RunRecord> = console.app.store.recon_latest().await?;
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
        let reconciled =
            latest
                .iter()
                .find(|r| r.channel == channel.id)
                .map_or("never".to_string(), |r| {
                    let ago = r.finished_at.map_or(String::new(), |t| {
                        format!(
                            "{} ago",
                            duration_s(((now - t).num_milliseconds() as f64 / 1000.0).max(0.0))
                        )
                    });
                    format!(
                        "<a href=\"/reconciliations/{}\">{ago}</a> · {} drift",
                        r.id,
                        percent(r.drift_rate())
                    )
                });
        let _ = write!(
            out,
            "<tr><td><a href=\"/channels/{}\">{}</a>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{reconciled}</td></tr>",
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
    let by_channel = match persisted(&console).await {
        Ok(k) => k,
        Err(e) => return storage_error(&viewer, e),
    };
    let live = match live_section(&console).await {
        Ok(l) => l,
        Err(e) => return storage_error(&viewer, e),
    };
    let mut body = kpi_table(&kpis(&by_channel));
    let _ = write!(
        body,
        "<h2>Last {KPI_DAYS} days</h2>{}\
         <section id=\"live\" data-stream=\"/overview/stream\">{live}</section>\
         <noscript><p class=\"hint\">Live figures update by themselves with script on; \
         this page reloads every 30 s without.</p></noscript>",
        daily_charts(&by_channel)
    );
    html::html_response(
        StatusCode::OK,
        html::page_with_head(
            "Overview",
            "/",
            Some(&viewer),
            None,
            "<noscript><meta http-equiv=\"refresh\" content=\"30\"></noscript>",
            &body,
        ),
    )
}

/// `GET /overview/live`: the charts and the health table as one fragment.
pub async fn live_fragment(State(console): State<Console>, viewer: Viewer) -> Response {
    match live_section(&console).await {
        Ok(fragment) => html::html_response(StatusCode::OK, fragment),
        Err(e) => storage_error(&viewer, e),
    }
}

/// `GET /overview/stream`: server-sent events, one `live` event (the live
/// section's HTML) at once and then after every sample, for `STREAM_FOR`;
/// it ends early when the session ends or the server stops.
pub async fn stream(
    State(console): State<Console>,
    _viewer: Viewer,
    headers: HeaderMap,
) -> Response {
    let session = super::session::session_id(&headers).unwrap_or_default();
    let stopping = console.app.stopping.subscribe();
    let until = tokio::time::Instant::now() + STREAM_FOR;
    let events = futures_util::stream::unfold(0u64, move |sent| {
        let console = console.clone();
        let session = session.clone();
        let mut stopping = stopping.clone();
        async move {
            if sent > 0 {
                let next = tokio::time::Instant::now() + super::live::SAMPLE_EVERY;
                tokio::select! {
                    _ = tokio::time::sleep_until(next.min(until)) => {}
                    _ = stopping.wait_for(|stop| *stop) => return None,
                }
            }
            if *stopping.borrow()
                || tokio::time::Instant::now() >= until
                || !console.sessions.alive(&session)
            {
                return None;
            }
            let event = match live_section(&console).await {
                Ok(fragment) => Event::default().event("live").data(fragment),
                Err(e) => {
                    tracing::debug!(error = %e, "console live event skipped");
                    Event::default().comment("store busy")
                }
            };
            Some((Ok::<_, std::convert::Infallible>(event), sent + 1))
        }
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}
