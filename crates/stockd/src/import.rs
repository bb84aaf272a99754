//! The import commands: a catalog file of variants (CSV or JSON), a file of
//! listings of one channel (CSV or JSON) and a file of events (JSON lines), sent in chunks of 1,000 to a `Target` with a
//! progress bar. Items are judged by the same code as API requests (`input`).

use crate::client::{SendError, Target, UpsertCounts};
use crate::error::ErrorDetail;
use crate::input;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use stockd_core::{ChannelId, Event, EventStatus, Variant};
use stockd_store::ListingRecord;

/// Items per request (one atomic request per chunk).
pub const CHUNK_LEN: usize = 1_000;
/// Most problems listed before an import gives up reading.
const PROBLEMS_MAX: usize = 20;
/// Columns a variants CSV may have.
const VARIANT_COLUMNS: [&str; 4] = ["sku", "title", "product_id", "gtin"];

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path} has invalid items; nothing was sent:\n  {}", problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("{path}, line {line}: {message}; stopped before sending the chunk holding it")]
    InvalidLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{context} was refused: {source}{}", details_text(.details))]
    Refused {
        context: String,
        source: SendError,
        details: Vec<String>,
    },
}

fn details_text(details: &[String]) -> String {
    details.iter().map(|d| format!("\n  {d}")).collect()
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub(crate) fn progress_bar(len: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

fn problem_text(where_: &str, detail_field: Option<&str>, message: &str) -> String {
    match detail_field {
        Some(field) => format!("{where_}: {field}: {message}"),
        None => format!("{where_}: {message}"),
    }
}

/// Reads and validates a variants file: CSV with a header row (columns
/// sku, title, product_id, gtin; empty cells mean absent) or a JSON array.
pub fn read_variants(path: &Path) -> Result<Vec<Variant>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let is_json = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("json") => true,
        Some(ext) if ext.eq_ignore_ascii_case("csv") => false,
        _ => text.trim_start().starts_with('['),
    };
    // (where, item) pairs, "where" naming the row or index for messages.
    let items: Vec<(String, Value)> = if is_json {
        json_items(path, &text)?
    } else {
        csv_items(path, &text)?
    };
    parse_items(path, items, input::parse_variant_item, |v| {
        v.sku.to_string()
    })
}

fn json_items(path: &Path, text: &str) -> Result<Vec<(String, Value)>, ImportError> {
    let format = |message: String| ImportError::Format {
        path: path.to_path_buf(),
        message,
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (format!("item {i}"), item))
            .collect()),
        Ok(_) => Err(format(
            "a JSON variants file must hold an array".to_string(),
        )),
        Err(e) => Err(format(format!("not valid JSON: {e}"))),
    }
}

fn csv_items(path: &Path, text: &str) -> Result<Vec<(String, Value)>, ImportError> {
    let format = |message: String| ImportError::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format(format!("cannot read the header row: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    if let Some(unknown) = headers
        .iter()
        .find(|h| !VARIANT_COLUMNS.contains(&h.as_str()))
    {
        return Err(format(format!(
            "unknown column {unknown:?}; expected {}",
            VARIANT_COLUMNS.join(",")
        )));
    }
    if !headers.iter().any(|h| h == "sku") {
        return Err(format("the header row has no sku column".to_string()));
    }
    let mut items = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let mut item = Map::new();
        for (header, cell) in headers.iter().zip(record.iter()) {
            if !cell.is_empty() {
                item.insert(header.clone(), Value::String(cell.to_string()));
            }
        }
        items.push((format!("line {line}"), Value::Object(item)));
    }
    Ok(items)
}

/// Sends variants in chunks of `CHUNK_LEN`.
pub async fn send_variants(
    target: &Target,
    variants: Vec<Variant>,
) -> Result<UpsertCounts, ImportError> {
    let bar = progress_bar(
        variants.len() as u64,
        "{spinner} variants {pos}/{len} [{bar:40}] {eta}",
    );
    let mut total = UpsertCounts::default();
    let mut sent = 0;
    let mut rest = variants;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(CHUNK_LEN));
        let chunk = std::mem::replace(&mut rest, tail);
        let len = chunk.len();
        let counts = target.upsert_variants(chunk).await.map_err(|source| {
            refused(format!("variants {}..{}", sent, sent + len), source, |d| {
                d.index.map(|i| format!("variant {}", sent + i))
            })
        })?;
        total.upserted += counts.upserted;
        total.replayed += counts.replayed;
        sent += len;
        bar.inc(len as u64);
    }
    bar.finish_and_clear();
    Ok(total)
}

fn refused(
    context: String,
    source: SendError,
    locate: impl Fn(&ErrorDetail) -> Option<String>,
) -> ImportError {
    let details = match &source {
        SendError::Refused { details, .. } => details
            .iter()
            .map(|d| {
                let where_ = locate(d).unwrap_or_else(|| "request".to_string());
                problem_text(&where_, d.field.as_deref(), &d.message)
            })
            .collect(),
        _ => Vec::new(),
    };
    ImportError::Refused {
        context,
        source,
        details,
    }
}

/// Reads and validates a listings file for `channel`: CSV with a header row
/// (columns sku, rank and any number of `external.<key>`; empty cells mean
/// absent) or a JSON array of `{"sku", "external", "rank"}`.
pub fn read_listings(path: &Path, channel: &ChannelId) -> Result<Vec<ListingRecord>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        || text.trim_start().starts_with('[');
    let items = if is_json {
        json_items(path, &text)?
    } else {
        listing_csv_items(path, &text)?
    };
    parse_items(
        path,
        items,
        |item| input::parse_listing_item(channel, item),
        |l| l.sku.to_string(),
    )
}

/// Parses every (where, item) pair, collecting every problem — including a
/// SKU that appears twice — up to `PROBLEMS_MAX`, so a file is checked whole
/// before anything of it is sent.
fn parse_items<T>(
    path: &Path,
    items: Vec<(String, Value)>,
    parse: impl Fn(&Value) -> Result<T, Vec<crate::error::FieldProblem>>,
    sku_of: impl Fn(&T) -> String,
) -> Result<Vec<T>, ImportError> {
    let mut parsed = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    let mut first_seen: HashMap<String, String> = HashMap::new();
    for (where_, item) in items {
        match parse(&item) {
            Ok(value) => {
                let sku = sku_of(&value);
                if let Some(first) = first_seen.get(&sku) {
                    problems.push(format!(
                        "{where_}: sku {sku:?} appears twice (first at {first})"
                    ));
                } else {
                    first_seen.insert(sku, where_);
                }
                parsed.push(value);
            }
            Err(found) => problems.extend(
                found
                    .iter()
                    .map(|p| problem_text(&where_, p.field.as_deref(), &p.message)),
            ),
        }
        if problems.len() >= PROBLEMS_MAX {
            problems.truncate(PROBLEMS_MAX);
            problems.push(format!("(stopped after {PROBLEMS_MAX} problems)"));
            break;
        }
    }
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(ImportError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

fn listing_csv_items(path: &Path, text: &str) -> Result<Vec<(String, Value)>, ImportError> {
    let format = |message: String| ImportError::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format(format!("cannot read the header row: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    if let Some(unknown) = headers.iter().find(|h| {
        !(h.as_str() == "sku"
            || h.as_str() == "rank"
            || h.strip_prefix("external.").is_some_and(|k| !k.is_empty()))
    }) {
        return Err(format(format!(
            "unknown column {unknown:?}; expected sku, rank and external.<key> columns"
        )));
    }
    if !headers.iter().any(|h| h == "sku") {
        return Err(format("the header row has no sku column".to_string()));
    }
    let mut items = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let mut item = Map::new();
        let mut external = Map::new();
        for (header, cell) in headers.iter().zip(record.iter()) {
            if cell.is_empty() {
                continue;
            }
            if let Some(key) = header.strip_prefix("external.") {
                external.insert(key.to_string(), Value::String(cell.to_string()));
            } else if header == "rank" {
                // A number when it is one; otherwise the text, which the
                // item check then names as a bad rank.
                let value = cell
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(cell.to_string()));
                item.insert(header.clone(), value);
            } else {
                item.insert(header.clone(), Value::String(cell.to_string()));
            }
        }
        if !external.is_empty() {
            item.insert("external".to_string(), Value::Object(external));
        }
        items.push((format!("line {line}"), Value::Object(item)));
    }
    Ok(items)
}

/// Sends listings of one channel in chunks of `CHUNK_LEN`; returns how many were upserted.
pub async fn send_listings(
    target: &Target,
    channel: &str,
    listings: Vec<ListingRecord>,
) -> Result<usize, ImportError> {
    let bar = progress_bar(
        listings.len() as u64,
        "{spinner} listings {pos}/{len} [{bar:40}] {eta}",
    );
    let mut total = 0;
    let mut sent = 0;
    let mut rest = listings;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(CHUNK_LEN));
        let chunk = std::mem::replace(&mut rest, tail);
        let len = chunk.len();
        total += target
            .upsert_listings(channel, chunk)
            .await
            .map_err(|source| {
                refused(format!("listings {}..{}", sent, sent + len), source, |d| {
                    d.index.map(|i| format!("listing {}", sent + i))
                })
            })?;
        sent += len;
        bar.inc(len as u64);
    }
    bar.finish_and_clear();
    Ok(total)
}

/// What became of the events of a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    pub applied: u64,
    pub duplicate: u64,
    pub quarantined: u64,
}

/// A chunk of events read from a file, not sent yet.
#[derive(Default)]
struct Chunk {
    lines: Vec<usize>,
    raw: Vec<Value>,
    events: Vec<Event>,
}

/// Sends a JSON-lines file of events (one per line; blank lines skipped) in
/// atomic chunks of `CHUNK_LEN`. A line that is not a valid event stops the
/// run before the chunk holding it is sent; the summary counts what was sent.
pub async fn send_events(target: &Target, path: &Path) -> (EventSummary, Result<(), ImportError>) {
    let mut summary = EventSummary::default();
    let result = send_events_into(target, path, &mut summary).await;
    (summary, result)
}

async fn send_events_into(
    target: &Target,
    path: &Path,
    summary: &mut EventSummary,
) -> Result<(), ImportError> {
    let read_error = |source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let size_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(
        size_bytes,
        "{spinner} events {bytes}/{total_bytes} [{bar:40}] {eta}",
    );
    let mut chunk = Chunk::default();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(read_error)?;
        bar.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let invalid = |message: String| ImportError::InvalidLine {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let value: Value =
            serde_json::from_str(&line).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        let event = input::parse_event(&value).map_err(|problems| {
            invalid(
                problems
                    .iter()
                    .map(|p| match &p.field {
                        Some(field) => format!("{field}: {}", p.message),
                        None => p.message.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        chunk.lines.push(line_no);
        chunk.raw.push(value);
        chunk.events.push(event);
        if chunk.events.len() == CHUNK_LEN {
            send_chunk(target, std::mem::take(&mut chunk), summary).await?;
        }
    }
    if !chunk.events.is_empty() {
        send_chunk(target, chunk, summary).await?;
    }
    bar.finish_and_clear();
    Ok(())
}

async fn send_chunk(
    target: &Target,
    chunk: Chunk,
    summary: &mut EventSummary,
) -> Result<(), ImportError> {
    let first = chunk.lines.first().copied().unwrap_or(0);
    let last = chunk.lines.last().copied().unwrap_or(0);
    let lines = chunk.lines;
    let results = target
        .submit(&chunk.raw, chunk.events)
        .await
        .map_err(|source| {
            refused(
                format!("the chunk of lines {first}..={last}"),
                source,
                |d| {
                    d.index
                        .and_then(|i| lines.get(i))
                        .map(|line| format!("line {line}"))
                },
            )
        })?;
    for result in results {
        match result.status {
            EventStatus::Applied => summary.applied += 1,
            EventStatus::Duplicate => summary.duplicate += 1,
            EventStatus::Quarantined => summary.quarantined += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        (dir, path)
    }

    #[test]
    fn csv_and_json_variants() {
        let (_d, csv) = file_with(
            "v.csv",
            "sku,title,product_id,gtin\nTEE-M,Tee M,TEE,8712345678906\nTEE-L,,TEE,\n",
        );
        let variants = read_variants(&csv).unwrap();
        assert_eq!(variants.len(), 2);
        assert_eq!(variants[1].title, None);
        assert_eq!(variants[0].gtin.as_deref(), Some("8712345678906"));
        let (_d, json) = file_with("v.json", r#"[{"sku": "A"}, {"sku": "B", "title": "b"}]"#);
        assert_eq!(read_variants(&json).unwrap().len(), 2);
    }

    #[test]
    fn bad_variant_files_name_the_place() {
        let check = |name: &str, text: &str, expect: &str| {
            let (_d, path) = file_with(name, text);
            let err = read_variants(&path).unwrap_err().to_string();
            assert!(err.contains(expect), "{err:?} lacks {expect:?}");
        };
        check("v.csv", "sku,colour\nA,red\n", "unknown column \"colour\"");
        check("v.csv", "sku,gtin\nA,123\n", "line 2: gtin:");
        check(
            "v.csv",
            "sku\nA\nA\n",
            "line 3: sku \"A\" appears twice (first at line 2)",
        );
        check(
            "v.json",
            r#"[{"sku": "A", "size": "M"}]"#,
            "item 0: size: unknown field",
        );
        check("v.json", r#"{"sku": "A"}"#, "must hold an array");
    }
}
