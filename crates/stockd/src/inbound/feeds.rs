//! Supplier feeds (`[[feeds]]`): a CSV or JSON file — a path, the newest file
//! matching a glob, or an http(s) URL fetched on a schedule — whose rows
//! become ledger events. In `supplier_stock` mode a row sets on_hand of the
//! variant at the supplier's location (`count`); in `inbound` mode a row is
//! a purchase-order/ASN line with its expected date (`inbound`).
//!
//! Every row's event is keyed by the feed, the SHA-256 of the file and the
//! row's line, so importing the same file again changes nothing. Bad rows
//! are reported with line, column and reason while good rows apply. A file
//! that would drop more than `max_sku_drop` of the SKUs the previous applied
//! run had (a truncated upload) is refused whole.

use crate::config::ConfigError;
use crate::input;
use chrono::{NaiveDate, Utc};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use stockd_core::{EventStatus, RequestError, Submission};
use stockd_store::inbound::{FeedRun, FeedRunStatus};
use stockd_store::Store;

/// Events per store request (each request is atomic; many are in flight).
const CHUNK_EVENTS: usize = 2_000;
/// Bad rows kept with a run.
const PROBLEMS_KEPT: usize = 200;
/// Default share of the previous run's SKUs a run may drop.
pub const MAX_SKU_DROP_DEFAULT: f64 = 0.25;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedFormat {
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedMode {
    /// The supplier's stock: on_hand at the supplier's location.
    SupplierStock,
    /// Purchase-order / ASN lines with expected dates.
    Inbound,
}

/// Which column holds what (header names for CSV, field names for JSON).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeedColumns {
    /// The supplier's SKU (mapped through `sku_map` when that is given).
    pub sku: String,
    pub qty: String,
    /// `inbound`: the purchase order (or ASN) id.
    pub po: Option<String>,
    /// `inbound`: the expected date, YYYY-MM-DD.
    pub eta: Option<String>,
    /// `inbound`: whether the supplier confirmed the line (true/false/yes/no/1/0).
    pub confirmed: Option<String>,
}

/// One `[[feeds]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFeed {
    pub id: String,
    pub supplier: String,
    /// A file path, a glob (`*`/`?` in the file name; the newest match is
    /// read) or an http(s) URL.
    pub source: Option<String>,
    pub format: FeedFormat,
    pub mode: FeedMode,
    /// The location the rows apply to (the supplier's, or the receiving warehouse).
    pub location: String,
    pub columns: FeedColumns,
    /// Supplier SKU → variant SKU; when given, unmapped SKUs are bad rows.
    #[serde(default)]
    pub sku_map: BTreeMap<String, String>,
    /// `inbound`: `confirmed` when the feed has no such column (default true).
    pub confirmed: Option<bool>,
    /// Fetch `source` this often; without it the feed runs only on demand.
    pub every_secs: Option<u64>,
    /// Refuse a run that drops more than this share of the previous run's SKUs.
    pub max_sku_drop: Option<f64>,
    /// CSV delimiter (default `,`).
    pub delimiter: Option<char>,
}

/// A resolved feed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedSettings {
    pub id: String,
    pub supplier: String,
    pub source: Option<String>,
    pub format: FeedFormat,
    pub mode: FeedMode,
    pub location: String,
    pub columns: FeedColumns,
    #[serde(skip)]
    pub sku_map: BTreeMap<String, String>,
    pub mapped_skus: usize,
    pub confirmed: bool,
    pub every_secs: Option<u64>,
    pub max_sku_drop: f64,
    pub delimiter: char,
}

fn feed_error(id: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Inbound(format!("feeds[{id}]: {}", message.into()))
}

/// Checks `[[feeds]]`.
pub fn resolve(feeds: Vec<FileFeed>) -> Result<Vec<FeedSettings>, ConfigError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(feeds.len());
    for f in feeds {
        if f.id.is_empty()
            || !f
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(feed_error(&f.id, "id must be letters, digits, '-' or '_'"));
        }
        if !seen.insert(f.id.clone()) {
            return Err(feed_error(&f.id, "id used twice"));
        }
        if stockd_core::LocationId::parse(f.location.as_str()).is_err() {
            return Err(feed_error(&f.id, "location is not a valid location id"));
        }
        if f.mode == FeedMode::Inbound && f.columns.po.is_none() {
            return Err(feed_error(&f.id, "mode inbound needs columns.po"));
        }
        let max_sku_drop = f.max_sku_drop.unwrap_or(MAX_SKU_DROP_DEFAULT);
        if !(0.0..=1.0).contains(&max_sku_drop) {
            return Err(feed_error(&f.id, "max_sku_drop must be between 0 and 1"));
        }
        if f.every_secs.is_some() && f.source.is_none() {
            return Err(feed_error(&f.id, "every_secs needs a source"));
        }
        if f.every_secs == Some(0) {
            return Err(feed_error(&f.id, "every_secs must be at least 1"));
        }
        out.push(FeedSettings {
            mapped_skus: f.sku_map.len(),
            id: f.id,
            supplier: f.supplier,
            source: f.source,
            format: f.format,
            mode: f.mode,
            location: f.location,
            columns: f.columns,
            sku_map: f.sku_map,
            confirmed: f.confirmed.unwrap_or(true),
            every_secs: f.every_secs,
            max_sku_drop,
            delimiter: f.delimiter.unwrap_or(','),
        });
    }
    Ok(out)
}

/// A bad row: where and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowProblem {
    /// 1-based line of the file (CSV; the header is line 1) or item number (JSON).
    pub line: u64,
    pub column: Option<String>,
    pub reason: String,
}

/// A file turned into events.
#[derive(Debug, Default)]
pub struct ParsedFeed {
    /// (line, event) of every good row.
    pub events: Vec<(u64, Submission)>,
    pub problems: Vec<RowProblem>,
    pub rows_total: u64,
    /// Distinct variant SKUs of the good rows.
    pub skus: u64,
}

/// Why a feed run could not start.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("unknown feed {0:?}")]
    UnknownFeed(String),
    #[error("feed {0:?} has no source; import a file with `stockd import feed`")]
    NoSource(String),
    #[error("cannot read {source_name}: {message}")]
    Read {
        source_name: String,
        message: String,
    },
    #[error("{0}")]
    Format(String),
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_qty(raw: &str) -> Result<i64, String> {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<i64>() {
        return if n < 0 {
            Err(format!("{raw:?} is negative"))
        } else {
            Ok(n)
        };
    }
    match raw.parse::<f64>() {
        Ok(f) if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) => Ok(f as i64),
        _ => Err(format!("{raw:?} is not a whole number of units")),
    }
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" => Some(true),
        "false" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// One row (column name → text) into an event, or the problem with it.
fn row_event(
    feed: &FeedSettings,
    file_sha: &str,
    line: u64,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Submission), RowProblem> {
    let problem = |column: &str, reason: String| RowProblem {
        line,
        column: Some(column.to_string()),
        reason,
    };
    let c = &feed.columns;
    let supplier_sku = get(&c.sku)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| problem(&c.sku, "empty".into()))?;
    let sku = if feed.sku_map.is_empty() {
        supplier_sku
    } else {
        feed.sku_map.get(&supplier_sku).cloned().ok_or_else(|| {
            problem(
                &c.sku,
                format!("no variant is mapped to supplier sku {supplier_sku:?}"),
            )
        })?
    };
    let qty_raw = get(&c.qty)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| problem(&c.qty, "empty".into()))?;
    let qty = parse_qty(&qty_raw).map_err(|r| problem(&c.qty, r))?;
    let key = format!("feed:{}:{}:{line}", feed.id, &file_sha[..16]);
    let source = format!("feed:{}", feed.id);
    let mut event = Map::new();
    event.insert("key".into(), json!(key));
    event.insert("sku".into(), json!(sku));
    event.insert("location".into(), json!(feed.location));
    event.insert("source".into(), json!(source));
    match feed.mode {
        FeedMode::SupplierStock => {
            event.insert("type".into(), json!("count"));
            event.insert("on_hand".into(), json!(qty));
            event.insert("reason".into(), json!(format!("supplier feed {}", feed.id)));
        }
        FeedMode::Inbound => {
            let po_column = c.po.as_deref().unwrap_or("po");
            let po = get(po_column)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| problem(po_column, "empty".into()))?;
            event.insert("type".into(), json!("inbound"));
            event.insert("po_id".into(), json!(po));
            event.insert("qty".into(), json!(qty));
            if let Some(eta_column) = &c.eta {
                if let Some(eta) = get(eta_column).filter(|s| !s.is_empty()) {
                    NaiveDate::parse_from_str(&eta, "%Y-%m-%d").map_err(|_| {
                        problem(eta_column, format!("{eta:?} is not a date (YYYY-MM-DD)"))
                    })?;
                    event.insert("eta".into(), json!(eta));
                }
            }
            let confirmed = match &c.confirmed {
                Some(column) => match get(column).filter(|s| !s.is_empty()) {
                    Some(raw) => parse_bool(&raw).ok_or_else(|| {
                        problem(column, format!("{raw:?} is not true/false/yes/no/1/0"))
                    })?,
                    None => feed.confirmed,
                },
                None => feed.confirmed,
            };
            event.insert("confirmed".into(), json!(confirmed));
        }
    }
    let event = input::parse_event(&Value::Object(event)).map_err(|problems| {
        let first = problems.into_iter().next();
        let field = first.as_ref().and_then(|p| p.field.clone());
        let column = match field.as_deref() {
            Some("sku") => Some(c.sku.clone()),
            Some("qty" | "on_hand") => Some(c.qty.clone()),
            Some("po_id") => c.po.clone(),
            Some("eta") => c.eta.clone(),
            other => other.map(str::to_string),
        };
        RowProblem {
            line,
            column,
            reason: first.map_or_else(|| "invalid".to_string(), |p| p.message),
        }
    })?;
    Ok((sku, stockd_store::submission(event)))
}

/// Turns a feed file into events (pure: no store, no clock).
pub fn parse_feed(feed: &FeedSettings, bytes: &[u8]) -> Result<ParsedFeed, FeedError> {
    let file_sha = hex::encode(Sha256::digest(bytes));
    let mut parsed = ParsedFeed::default();
    let mut skus = HashSet::new();
    let mut take =
        |parsed: &mut ParsedFeed, line: u64, row: Result<(String, Submission), RowProblem>| {
            parsed.rows_total += 1;
            match row {
                Ok((sku, event)) => {
                    skus.insert(sku);
                    parsed.events.push((line, event));
                }
                Err(problem) => parsed.problems.push(problem),
            }
        };
    match feed.format {
        FeedFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(u8::try_from(feed.delimiter).unwrap_or(b','))
                .flexible(true)
                .trim(csv::Trim::All)
                .from_reader(bytes);
            let headers = reader
                .headers()
                .map_err(|e| FeedError::Format(format!("cannot read the CSV header: {e}")))?
                .clone();
            let c = &feed.columns;
            let mut needed = vec![&c.sku, &c.qty];
            needed.extend(c.po.iter());
            for column in needed {
                if !headers.iter().any(|h| h == column) {
                    return Err(FeedError::Format(format!(
                        "the CSV header has no column {column:?} (it has: {})",
                        headers.iter().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
            let index: BTreeMap<String, usize> = headers
                .iter()
                .enumerate()
                .map(|(i, h)| (h.to_string(), i))
                .collect();
            for record in reader.records() {
                match record {
                    Ok(record) => {
                        let line = record.position().map_or(0, |p| p.line());
                        let get = |column: &str| {
                            index
                                .get(column)
                                .and_then(|&i| record.get(i))
                                .map(str::to_string)
                        };
                        let row = row_event(feed, &file_sha, line, &get);
                        take(&mut parsed, line, row);
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line());
                        take(
                            &mut parsed,
                            line,
                            Err(RowProblem {
                                line,
                                column: None,
                                reason: e.to_string(),
                            }),
                        );
                    }
                }
            }
        }
        FeedFormat::Json => {
            let value: Value = serde_json::from_slice(bytes)
                .map_err(|e| FeedError::Format(format!("not valid JSON: {e}")))?;
            let Value::Array(items) = value else {
                return Err(FeedError::Format(
                    "a JSON feed must be an array of objects".into(),
                ));
            };
            for (i, item) in items.iter().enumerate() {
                let line = i as u64 + 1;
                let row = match item {
                    Value::Object(object) => {
                        let get = |column: &str| object.get(column).and_then(text_of);
                        row_event(feed, &file_sha, line, &get)
                    }
                    _ => Err(RowProblem {
                        line,
                        column: None,
                        reason: "must be a JSON object".into(),
                    }),
                };
                take(&mut parsed, line, row);
            }
        }
    }
    parsed.skus = skus.len() as u64;
    Ok(parsed)
}

/// Runs a feed over the bytes of one file: the truncation guard, the good
/// rows applied, the run recorded. Storage failures end as a `failed` run.
pub async fn run_feed(
    store: &dyn Store,
    feed: &FeedSettings,
    source_name: &str,
    bytes: &[u8],
    progress: Option<&ProgressBar>,
) -> Result<FeedRun, FeedError> {
    let started_at = Utc::now();
    let parsed = parse_feed(feed, bytes)?;
    let mut run = FeedRun {
        feed: feed.id.clone(),
        source: source_name.to_string(),
        status: FeedRunStatus::Applied,
        started_at,
        finished_at: started_at,
        rows_total: parsed.rows_total,
        rows_applied: 0,
        rows_duplicate: 0,
        rows_bad: parsed.problems.len() as u64,
        skus: parsed.skus,
        error: None,
        problems: Value::Null,
    };
    let mut problems = parsed.problems;
    match store.last_applied_feed_run(&feed.id).await {
        Ok(Some(previous)) if previous.run.skus > 0 => {
            let before = previous.run.skus as f64;
            let dropped = (before - parsed.skus as f64).max(0.0) / before;
            if dropped > feed.max_sku_drop {
                run.status = FeedRunStatus::Refused;
                run.error = Some(format!(
                    "feed_truncated: {} SKUs against {} in the previous run ({:.0} % dropped, at most {:.0} % allowed); nothing was applied",
                    parsed.skus,
                    previous.run.skus,
                    dropped * 100.0,
                    feed.max_sku_drop * 100.0
                ));
            }
        }
        Ok(_) => {}
        Err(e) => {
            run.status = FeedRunStatus::Failed;
            run.error = Some(format!("storage_unavailable: {e}"));
        }
    }
    if run.status == FeedRunStatus::Applied {
        if let Some(bar) = progress {
            bar.set_length(parsed.events.len() as u64);
        }
        let chunks: Vec<&[(u64, Submission)]> = parsed.events.chunks(CHUNK_EVENTS).collect();
        let sends = chunks
            .iter()
            .map(|chunk| apply_chunk(store, chunk, progress));
        for outcome in futures_util::future::join_all(sends).await {
            match outcome {
                Ok((applied, duplicate, refused)) => {
                    run.rows_applied += applied;
                    run.rows_duplicate += duplicate;
                    run.rows_bad += refused.len() as u64;
                    problems.extend(refused);
                }
                Err(e) => {
                    run.status = FeedRunStatus::Failed;
                    run.error = Some(format!("storage_unavailable: {e}"));
                }
            }
        }
    }
    problems.sort_by_key(|p| p.line);
    problems.truncate(PROBLEMS_KEPT);
    run.problems = serde_json::to_value(&problems).unwrap_or(Value::Null);
    run.finished_at = Utc::now();
    // The run's record is best effort: its events are committed either way.
    if let Err(e) = store.record_feed_run(run.clone()).await {
        tracing::error!(feed = %feed.id, error = %e, "cannot record the feed run");
    }
    Ok(run)
}

/// Applies one chunk atomically; an event the ledger refuses is taken out
/// (reported as a bad row) and the rest sent again.
async fn apply_chunk(
    store: &dyn Store,
    chunk: &[(u64, Submission)],
    progress: Option<&ProgressBar>,
) -> Result<(u64, u64, Vec<RowProblem>), stockd_store::StoreError> {
    let mut rows: Vec<&(u64, Submission)> = chunk.iter().collect();
    let mut refused = Vec::new();
    while !rows.is_empty() {
        let submissions = rows.iter().map(|(_, s)| s.clone()).collect();
        match store.submit(submissions).await? {
            Ok(results) => {
                let applied = results
                    .iter()
                    .filter(|r| r.status != EventStatus::Duplicate)
                    .count() as u64;
                if let Some(bar) = progress {
                    bar.inc(chunk.len() as u64);
                }
                return Ok((applied, results.len() as u64 - applied, refused));
            }
            Err(RequestError::Rejected { index, error }) => {
                let (line, _) = rows.remove(index);
                refused.push(RowProblem {
                    line: *line,
                    column: None,
                    reason: format!("refused by the ledger: {error} ({})", error.code()),
                });
            }
            Err(RequestError::KeyReused { index, key }) => {
                let (line, _) = rows.remove(index);
                refused.push(RowProblem {
                    line: *line,
                    column: None,
                    reason: format!("key {key} was used before for another payload"),
                });
            }
        }
    }
    Ok((0, 0, refused))
}

/// Reads a feed's configured source: a file, the newest file matching a
/// glob, or an http(s) URL.
pub async fn read_source(feed: &FeedSettings) -> Result<(String, Vec<u8>), FeedError> {
    let source = feed
        .source
        .clone()
        .ok_or_else(|| FeedError::NoSource(feed.id.clone()))?;
    let read_error = |message: String| FeedError::Read {
        source_name: source.clone(),
        message,
    };
    if source.starts_with("http://") || source.starts_with("https://") {
        let response = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| read_error(e.to_string()))?
            .get(&source)
            .send()
            .await
            .map_err(|e| read_error(e.to_string()))?;
        if !response.status().is_success() {
            return Err(read_error(format!("HTTP {}", response.status())));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| read_error(e.to_string()))?;
        return Ok((source.clone(), bytes.to_vec()));
    }
    let path = if source.contains(['*', '?']) {
        newest_match(Path::new(&source)).map_err(read_error)?
    } else {
        PathBuf::from(&source)
    };
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| read_error(format!("{}: {e}", path.display())))?;
    Ok((path.display().to_string(), bytes))
}

/// The most recently modified file whose name matches the pattern's file name.
fn newest_match(pattern: &Path) -> Result<PathBuf, String> {
    let dir = pattern
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = pattern
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("the pattern has no file name")?;
    if dir.to_string_lossy().contains(['*', '?']) {
        return Err("wildcards are allowed in the file name only".into());
    }
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if !wildcard_match(name, file_name) {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| e.to_string())?;
        if best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, entry.path()));
        }
    }
    best.map(|(_, p)| p)
        .ok_or_else(|| format!("no file matches {}", pattern.display()))
}

/// `*` any run of characters, `?` one character.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Runs the feeds that have `every_secs` on their schedule until stopped.
pub struct FeedScheduler {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FeedScheduler {
    pub fn start(store: std::sync::Arc<dyn Store>, feeds: &[FeedSettings]) -> FeedScheduler {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tasks = feeds
            .iter()
            .filter_map(|feed| Some((feed.clone(), feed.every_secs?)))
            .map(|(feed, every)| {
                let store = store.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(every));
                    loop {
                        tokio::select! {
                            _ = stopped.changed() => return,
                            _ = tick.tick() => {}
                        }
                        let outcome = match read_source(&feed).await {
                            Ok((name, bytes)) => run_feed(&*store, &feed, &name, &bytes, None).await,
                            Err(e) => Err(e),
                        };
                        match outcome {
                            Ok(run) => tracing::info!(feed = %feed.id, status = ?run.status, applied = run.rows_applied, bad = run.rows_bad, error = ?run.error, "feed run"),
                            Err(e) => tracing::error!(feed = %feed.id, error = %e, "feed run failed"),
                        }
                    }
                })
            })
            .collect();
        FeedScheduler { stop, tasks }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_file_names() {
        assert!(wildcard_match("stock-*.csv", "stock-2026-12-04.csv"));
        assert!(wildcard_match("stock-??.csv", "stock-01.csv"));
        assert!(!wildcard_match("stock-*.csv", "stock-1.json"));
        assert!(wildcard_match("*", "x"));
    }

    #[test]
    fn quantities_are_whole_non_negative_numbers() {
        assert_eq!(parse_qty(" 12 "), Ok(12));
        assert_eq!(parse_qty("5.0"), Ok(5));
        assert!(parse_qty("-1").is_err());
        assert!(parse_qty("1.5").is_err());
        assert!(parse_qty("many").is_err());
    }
}
