//! `GET /v1/kpis`: the delivery figures of this process (`channels`, as
//! before) and the persisted daily figures per channel over a range of days
//! — order lines, oversold lines, cancels for lack of stock, pushes,
//! failures, dead letters, update latency percentiles from the stored
//! histogram, drift from the last reconciliation — each headline figure
//! against its target with pass/fail. `GET /v1/pushes`: the push audit trail.

use crate::api::{page_limit, AppState, QueryParams};
use crate::auth::{Authorized, Read};
use crate::error::{ApiError, ErrorBody};
use crate::outbound::dispatch::ChannelFigures;
use axum::extract::State;
use axum::Json;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use stockd_core::{ChannelId, Sku};
use stockd_store::kpis::{histogram_percentile, DayCounts, DayFigures, PushAttempt};
use stockd_store::reconcile::RunStatus;
use stockd_store::{Store, StoreError};
use utoipa::{IntoParams, ToSchema};

/// Targets: oversold lines per order line, update latency p95, drifting
/// listings per listing checked, stock cancels per order line.
pub const TARGET_OVERSELL_RATE: f64 = 0.005;
pub const TARGET_LATENCY_P95_MS: f64 = 5_000.0;
pub const TARGET_DRIFT_RATE: f64 = 0.002;
pub const TARGET_CANCEL_RATIO: f64 = 0.01;

/// Longest range one query covers.
const RANGE_DAYS_MAX: i64 = 400;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KpiParams {
    /// First day (UTC, `YYYY-MM-DD`; default 29 days before `to`).
    #[param(value_type = Option<chrono::NaiveDate>)]
    pub from: Option<String>,
    /// Last day (UTC, `YYYY-MM-DD`; default today).
    #[param(value_type = Option<chrono::NaiveDate>)]
    pub to: Option<String>,
    /// Only this channel.
    pub channel: Option<String>,
}

/// Percentiles from the stored latency histogram (bucket upper bounds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct HistogramPercentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub samples: u64,
}

/// One headline figure against its target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Figure {
    /// `None` when there is nothing to measure yet.
    pub value: Option<f64>,
    pub target: f64,
    /// `value < target`; `None` without a value.
    pub pass: Option<bool>,
}

impl Figure {
    fn new(value: Option<f64>, target: f64) -> Figure {
        Figure {
            value,
            target,
            pass: value.map(|v| v < target),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Targets {
    pub oversell_rate: Figure,
    pub latency_p95_ms: Figure,
    pub drift_rate: Figure,
    pub cancel_ratio: Figure,
}

/// Sums over some days.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Sums {
    pub order_lines: u64,
    pub oversold_lines: u64,
    /// Order lines cancelled for lack of stock.
    pub stock_cancels: u64,
    pub pushes: u64,
    pub failures: u64,
    pub dead_letters: u64,
    pub latency_ms: HistogramPercentiles,
    pub oversell_rate: Option<f64>,
    pub cancel_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Day {
    #[schema(value_type = String)]
    pub day: NaiveDate,
    #[serde(flatten)]
    pub sums: Sums,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelKpis {
    #[schema(value_type = String)]
    pub channel: ChannelId,
    /// The whole range.
    pub total: Sums,
    /// Drifting listings per listing checked in the channel's latest
    /// reconciliation finished in the range.
    pub drift_rate: Option<f64>,
    pub targets: Targets,
    /// One entry per day with figures.
    pub daily: Vec<Day>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Kpis {
    /// This process's delivery figures since it started.
    pub channels: Vec<ChannelFigures>,
    #[schema(value_type = String)]
    pub from: NaiveDate,
    #[schema(value_type = String)]
    pub to: NaiveDate,
    /// Persisted figures per channel over `from..=to`.
    pub by_channel: Vec<ChannelKpis>,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn sums(counts: &DayCounts, oversold: u64) -> Sums {
    Sums {
        order_lines: counts.order_lines,
        oversold_lines: oversold,
        stock_cancels: counts.stock_cancels,
        pushes: counts.pushes,
        failures: counts.failures,
        dead_letters: counts.dead_letters,
        latency_ms: HistogramPercentiles {
            p50: histogram_percentile(&counts.latency, 50.0),
            p95: histogram_percentile(&counts.latency, 95.0),
            p99: histogram_percentile(&counts.latency, 99.0),
            samples: counts.latency.iter().sum(),
        },
        oversell_rate: ratio(oversold, counts.order_lines),
        cancel_ratio: ratio(counts.stock_cancels, counts.order_lines),
    }
}

fn parse_day(raw: &str, name: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::InvalidQuery(format!("{name}: expected YYYY-MM-DD, got {raw:?}")))
}

/// The persisted figures per channel over `from..=to` (also for `/metrics`).
pub async fn kpis_by_channel(
    store: &dyn Store,
    from: NaiveDate,
    to: NaiveDate,
    channel: Option<&ChannelId>,
) -> Result<Vec<ChannelKpis>, StoreError> {
    let days: Vec<DayFigures> = store.kpi_days(from, to, channel).await?;
    let mut per: BTreeMap<ChannelId, Vec<DayFigures>> = BTreeMap::new();
    for d in days {
        per.entry(d.channel.clone()).or_default().push(d);
    }
    // Drift: the latest completed run finished within the range.
    let start = from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let end = to
        .succ_opt()
        .unwrap_or(to)
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let mut drift: BTreeMap<ChannelId, f64> = BTreeMap::new();
    for run in store.recon_runs(channel, None, 1_000).await? {
        let within = run.finished_at.is_some_and(|t| t >= start && t < end);
        if run.status == RunStatus::Completed && within && !drift.contains_key(&run.channel) {
            drift.insert(run.channel.clone(), run.drift_rate());
            per.entry(run.channel.clone()).or_default();
        }
    }
    Ok(per
        .into_iter()
        .map(|(channel, mut days)| {
            days.sort_by_key(|d| d.day);
            let mut total = DayCounts::default();
            let mut oversold = 0;
            for d in &days {
                total.add(&d.counts);
                oversold += d.oversold_lines;
            }
            let total = sums(&total, oversold);
            let drift_rate = drift.get(&channel).copied();
            let targets = Targets {
                oversell_rate: Figure::new(total.oversell_rate, TARGET_OVERSELL_RATE),
                latency_p95_ms: Figure::new(total.latency_ms.p95, TARGET_LATENCY_P95_MS),
                drift_rate: Figure::new(drift_rate, TARGET_DRIFT_RATE),
                cancel_ratio: Figure::new(total.cancel_ratio, TARGET_CANCEL_RATIO),
            };
            ChannelKpis {
                channel,
                total,
                drift_rate,
                targets,
                daily: days
                    .iter()
                    .map(|d| Day {
                        day: d.day,
                        sums: sums(&d.counts, d.oversold_lines),
                    })
                    .collect(),
            }
        })
        .collect())
}

#[utoipa::path(
    get,
    path = "/v1/kpis",
    tag = "sync",
    params(KpiParams),
    responses(
        (status = 200, description = "This process's delivery figures (`channels`) and the persisted daily figures per channel with the four targets (oversell rate < 0.5 %, update latency p95 < 5 s, drift rate < 0.2 %, cancel ratio < 1 %) and pass/fail.", body = Kpis),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_kpis(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(params): QueryParams<KpiParams>,
) -> Result<Json<Kpis>, ApiError> {
    let to = match &params.to {
        Some(raw) => parse_day(raw, "to")?,
        None => Utc::now().date_naive(),
    };
    let from = match &params.from {
        Some(raw) => parse_day(raw, "from")?,
        None => to - chrono::Duration::days(29),
    };
    if from > to {
        return Err(ApiError::InvalidQuery("from is after to".into()));
    }
    if (to - from).num_days() >= RANGE_DAYS_MAX {
        return Err(ApiError::InvalidQuery(format!(
            "at most {RANGE_DAYS_MAX} days per query"
        )));
    }
    let channel = params
        .channel
        .map(|c| ChannelId::parse(c).map_err(|e| ApiError::InvalidQuery(format!("channel: {e}"))))
        .transpose()?;
    let by_channel = kpis_by_channel(&*state.store, from, to, channel.as_ref())
        .await
        .map_err(ApiError::Storage)?;
    let oldest = state
        .store
        .outbox_oldest_unsent()
        .await
        .map_err(ApiError::Storage)?;
    Ok(Json(Kpis {
        channels: state.sync_kpis.figures_with(&oldest, Utc::now()),
        from,
        to,
        by_channel,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PushParams {
    pub sku: Option<String>,
    pub channel: Option<String>,
    /// Attempts with a larger id (the previous page's `next_after`).
    pub after: Option<i64>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushPage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<PushAttempt>,
    pub next_after: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/pushes",
    tag = "sync",
    params(PushParams),
    responses(
        (status = 200, description = "Push attempts, oldest first: what was sent (quantity, availability, ETA, believed count, reference), the desired generation, rules version, causing ledger seq, the channel's answer (outcome, its count, code, message) and latency.", body = PushPage),
        (status = 400, description = "`invalid_query`.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_pushes(
    State(state): State<AppState>,
    _caller: Authorized<Read>,
    QueryParams(params): QueryParams<PushParams>,
) -> Result<Json<PushPage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let sku = params
        .sku
        .filter(|s| !s.is_empty())
        .map(|s| Sku::parse(s).map_err(|e| ApiError::InvalidQuery(format!("sku: {e}"))))
        .transpose()?;
    let channel = params
        .channel
        .map(|c| ChannelId::parse(c).map_err(|e| ApiError::InvalidQuery(format!("channel: {e}"))))
        .transpose()?;
    let items = state
        .store
        .push_attempts(
            sku.as_ref(),
            channel.as_ref(),
            params.after.unwrap_or(0),
            limit,
        )
        .await
        .map_err(ApiError::Storage)?;
    let next_after = if items.len() == limit as usize {
        items.last().map(|a| a.id)
    } else {
        None
    };
    Ok(Json(PushPage { items, next_after }))
}

/// The last 30 days' figures per channel as Prometheus gauges.
pub async fn render_metrics(store: &dyn Store, out: &mut String) {
    use std::fmt::Write;
    let to = Utc::now().date_naive();
    let from = to - chrono::Duration::days(29);
    let Ok(kpis) = kpis_by_channel(store, from, to, None).await else {
        return;
    };
    // The stored latency histogram, cumulative as Prometheus wants it.
    if let Ok(days) = store.kpi_days(from, to, None).await {
        let mut per: BTreeMap<ChannelId, DayCounts> = BTreeMap::new();
        for d in &days {
            per.entry(d.channel.clone()).or_default().add(&d.counts);
        }
        let _ = writeln!(
            out,
            "# HELP stockd_kpi_update_latency_ms Update latency over the last 30 days (stored histogram), in milliseconds.\n# TYPE stockd_kpi_update_latency_ms histogram"
        );
        for (channel, counts) in &per {
            let label = crate::metrics::escape(channel.as_str());
            let mut cumulative = 0;
            for (i, n) in counts.latency.iter().enumerate() {
                cumulative += n;
                let le = stockd_store::kpis::LATENCY_BUCKETS_MS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "stockd_kpi_update_latency_ms_bucket{{channel=\"{label}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "stockd_kpi_update_latency_ms_count{{channel=\"{label}\"}} {cumulative}"
            );
        }
    }
    for (name, help, get) in [
        (
            "stockd_kpi_oversell_rate",
            "Oversold order lines per order line over the last 30 days.",
            (|k: &ChannelKpis| k.targets.oversell_rate.value) as fn(&ChannelKpis) -> Option<f64>,
        ),
        (
            "stockd_kpi_cancel_ratio",
            "Order lines cancelled for lack of stock per order line over the last 30 days.",
            |k| k.targets.cancel_ratio.value,
        ),
        (
            "stockd_kpi_latency_p95_ms",
            "Update latency p95 (stored histogram) over the last 30 days, in milliseconds.",
            |k| k.targets.latency_p95_ms.value,
        ),
        (
            "stockd_kpi_drift_rate",
            "Drift rate of the latest reconciliation in the last 30 days.",
            |k| k.targets.drift_rate.value,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for k in &kpis {
            if let Some(v) = get(k) {
                let _ = writeln!(
                    out,
                    "{name}{{channel=\"{}\"}} {v}",
                    crate::metrics::escape(k.channel.as_str())
                );
            }
        }
    }
}
