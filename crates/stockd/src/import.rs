//! The import commands: a catalog file of variants (CSV or JSON), a file of
//! listings of one channel (CSV or JSON) and a file of events (JSON lines),
//! sent in chunks to a `Target` with a progress bar. Files are streamed, never
//! held whole: a catalog file is read twice (checked whole first, then
//! sent in chunks of `CATALOG_CHUNK_DIRECT` to a store, of the API's maximum
//! to a server), events in chunks of `CHUNK_LEN`. Items are judged by the same code as API requests (`input`).

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
use tokio::sync::mpsc;

/// Events per request (one atomic request per chunk).
pub const CHUNK_LEN: usize = 1_000;
/// Catalog items (variants, listings) per transaction when an import writes
/// to a store directly: large transactions, bounded memory.
pub const CATALOG_CHUNK_DIRECT: usize = 50_000;
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

/// How a catalog file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Json,
    Csv,
}

/// Which catalog file: its CSV columns and the name of its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatalogKind {
    Variants,
    Listings,
}

/// Items read ahead of the one being handled (bounds the reader's memory).
const READ_AHEAD: usize = 4_096;

/// `.json` and `.csv` say what they are; otherwise the first character does.
fn format_of(path: &Path) -> Result<FileFormat, ImportError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("json") => return Ok(FileFormat::Json),
        Some(ext) if ext.eq_ignore_ascii_case("csv") => return Ok(FileFormat::Csv),
        _ => {}
    }
    let file = std::fs::File::open(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    loop {
        let buf = reader.fill_buf().map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let Some(&byte) = buf.first() else {
            return Ok(FileFormat::Csv);
        };
        if byte.is_ascii_whitespace() {
            reader.consume(1);
            continue;
        }
        return Ok(if byte == b'[' {
            FileFormat::Json
        } else {
            FileFormat::Csv
        });
    }
}

type Item = Result<(String, Value), ImportError>;

/// Reads a catalog file on a thread of its own and hands its items, each
/// with where it stands ("line 3", "item 2"), over a bounded channel: the
/// file is never held whole.
fn stream_items(path: &Path, kind: CatalogKind) -> Result<mpsc::Receiver<Item>, ImportError> {
    let format = format_of(path)?;
    let file = std::fs::File::open(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("stockd-import-reader".into())
        .spawn(move || {
            let reader = BufReader::with_capacity(1 << 20, file);
            let result = match format {
                FileFormat::Json => json_items(&owned, reader, kind, &tx),
                FileFormat::Csv => csv_items(&owned, reader, kind, &tx),
            };
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        })
        .map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(rx)
}

fn json_items(
    path: &Path,
    reader: impl std::io::Read,
    kind: CatalogKind,
    tx: &mpsc::Sender<Item>,
) -> Result<(), ImportError> {
    use serde::de::{Deserializer as _, SeqAccess, Visitor};
    struct Each<'a> {
        tx: &'a mpsc::Sender<Item>,
        stopped: &'a mut bool,
    }
    impl<'de> Visitor<'de> for Each<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut index = 0usize;
            while let Some(item) = seq.next_element::<Value>()? {
                if self
                    .tx
                    .blocking_send(Ok((format!("item {index}"), item)))
                    .is_err()
                {
                    *self.stopped = true;
                    return Err(serde::de::Error::custom("stopped"));
                }
                index += 1;
            }
            Ok(())
        }
    }
    let format = |message: String| ImportError::Format {
        path: path.to_path_buf(),
        message,
    };
    let what = match kind {
        CatalogKind::Variants => "variants",
        CatalogKind::Listings => "listings",
    };
    let mut stopped = false;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = (&mut de).deserialize_any(Each {
        tx,
        stopped: &mut stopped,
    });
    if stopped {
        return Ok(());
    }
    match result.and_then(|()| de.end()) {
        Ok(()) => Ok(()),
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            Err(format(format!("a JSON {what} file must hold an array")))
        }
        Err(e) => Err(format(format!("not valid JSON: {e}"))),
    }
}

fn csv_items(
    path: &Path,
    reader: impl std::io::Read,
    kind: CatalogKind,
    tx: &mpsc::Sender<Item>,
) -> Result<(), ImportError> {
    let format = |message: String| ImportError::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format(format!("cannot read the header row: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    match kind {
        CatalogKind::Variants => {
            if let Some(unknown) = headers
                .iter()
                .find(|h| !VARIANT_COLUMNS.contains(&h.as_str()))
            {
                return Err(format(format!(
                    "unknown column {unknown:?}; expected {}",
                    VARIANT_COLUMNS.join(",")
                )));
            }
        }
        CatalogKind::Listings => {
            if let Some(unknown) = headers.iter().find(|h| {
                !(h.as_str() == "sku"
                    || h.as_str() == "rank"
                    || h.strip_prefix("external.").is_some_and(|k| !k.is_empty()))
            }) {
                return Err(format(format!(
                    "unknown column {unknown:?}; expected sku, rank and external.<key> columns"
                )));
            }
        }
    }
    if !headers.iter().any(|h| h == "sku") {
        return Err(format("the header row has no sku column".to_string()));
    }
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(format(e.to_string())),
        }
        let line = record.position().map_or(0, |p| p.line());
        let item = match kind {
            CatalogKind::Variants => variant_row(&headers, &record),
            CatalogKind::Listings => listing_row(&headers, &record),
        };
        if tx
            .blocking_send(Ok((format!("line {line}"), item)))
            .is_err()
        {
            return Ok(());
        }
    }
}

fn variant_row(headers: &[String], record: &csv::StringRecord) -> Value {
    let mut item = Map::new();
    for (header, cell) in headers.iter().zip(record.iter()) {
        if !cell.is_empty() {
            item.insert(header.clone(), Value::String(cell.to_string()));
        }
    }
    Value::Object(item)
}

fn listing_row(headers: &[String], record: &csv::StringRecord) -> Value {
    let mut item = Map::new();
    let mut external = Map::new();
    for (header, cell) in headers.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        if let Some(key) = header.strip_prefix("external.") {
            external.insert(key.to_string(), Value::String(cell.to_string()));
        } else if header == "rank" {
            // A number when it is one; otherwise the text, which the item
            // check then names as a bad rank.
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
    Value::Object(item)
}

/// A SKU's 128-bit fingerprint: what the duplicate check keeps per item
/// instead of the SKU (two SipHash keys; a false match is out of reach).
fn fingerprint(sku: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |seed: u8| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut hasher);
        sku.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// Checks a whole catalog file before anything is sent: every item valid,
/// no SKU twice; lists up to `PROBLEMS_MAX` problems. Streams the file;
/// returns how many items it holds.
async fn check_items<T>(
    path: &Path,
    kind: CatalogKind,
    parse: impl Fn(&Value) -> Result<T, Vec<crate::error::FieldProblem>>,
    sku_of: impl Fn(&T) -> String,
) -> Result<usize, ImportError> {
    let mut items = stream_items(path, kind)?;
    let mut problems = Vec::new();
    // Fingerprint → the number of the line or item where the SKU was first
    // seen (every item of one file is named with the same word).
    let mut first_seen: HashMap<u128, u64> = HashMap::new();
    let mut count = 0;
    while let Some(item) = items.recv().await {
        let (where_, item) = item?;
        count += 1;
        match parse(&item) {
            Ok(value) => {
                let sku = sku_of(&value);
                let (word, number) = where_.split_once(' ').unwrap_or(("item", "0"));
                match first_seen.entry(fingerprint(&sku)) {
                    std::collections::hash_map::Entry::Occupied(first) => problems.push(format!(
                        "{where_}: sku {sku:?} appears twice (first at {word} {})",
                        first.get()
                    )),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(number.parse().unwrap_or(0));
                    }
                }
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
        Ok(count)
    } else {
        Err(ImportError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// A checked file read again, in chunks of parsed items.
struct Chunks<T, P> {
    path: PathBuf,
    items: mpsc::Receiver<Item>,
    chunk_len: usize,
    parse: P,
    _item: std::marker::PhantomData<T>,
}

impl<T, P> Chunks<T, P>
where
    P: Fn(&Value) -> Result<T, Vec<crate::error::FieldProblem>>,
{
    fn open(
        path: &Path,
        kind: CatalogKind,
        chunk_len: usize,
        parse: P,
    ) -> Result<Self, ImportError> {
        Ok(Chunks {
            path: path.to_path_buf(),
            items: stream_items(path, kind)?,
            chunk_len,
            parse,
            _item: std::marker::PhantomData,
        })
    }

    /// The next chunk; `None` at the end of the file.
    async fn next(&mut self) -> Result<Option<Vec<T>>, ImportError> {
        let mut chunk = Vec::with_capacity(self.chunk_len.min(READ_AHEAD));
        while chunk.len() < self.chunk_len {
            let Some(item) = self.items.recv().await else {
                break;
            };
            let (where_, item) = item?;
            let value = (self.parse)(&item).map_err(|problems| ImportError::Invalid {
                path: self.path.clone(),
                problems: problems
                    .iter()
                    .map(|p| problem_text(&where_, p.field.as_deref(), &p.message))
                    .chain(["(the file changed while it was imported)".to_string()])
                    .collect(),
            })?;
            chunk.push(value);
        }
        Ok((!chunk.is_empty()).then_some(chunk))
    }
}

/// Catalog items per request: a store written directly takes each chunk in
/// one transaction; a server takes at most its per-request maximum.
fn catalog_chunk_len(target: &Target) -> usize {
    match target {
        Target::Direct(_) => CATALOG_CHUNK_DIRECT,
        Target::Server(_) => input::VARIANTS_PER_REQUEST_MAX,
    }
}

/// Checks a variants file: CSV with a header row (columns sku, title,
/// product_id, gtin; empty cells mean absent) or a JSON array. Returns how
/// many variants it holds.
pub async fn check_variants(path: &Path) -> Result<usize, ImportError> {
    check_items(
        path,
        CatalogKind::Variants,
        input::parse_variant_item,
        |v| v.sku.to_string(),
    )
    .await
}

/// Reads a whole variants file (checked first); for small files and tests.
pub async fn read_variants(path: &Path) -> Result<Vec<Variant>, ImportError> {
    check_variants(path).await?;
    let mut chunks = Chunks::open(
        path,
        CatalogKind::Variants,
        usize::MAX,
        input::parse_variant_item,
    )?;
    Ok(chunks.next().await?.unwrap_or_default())
}

/// Sends a checked variants file of `total` items in chunks, streaming it.
pub async fn send_variants(
    target: &Target,
    path: &Path,
    total: usize,
) -> Result<UpsertCounts, ImportError> {
    let bar = progress_bar(
        total as u64,
        "{spinner} variants {pos}/{len} [{bar:40}] {eta}",
    );
    let mut chunks = Chunks::open(
        path,
        CatalogKind::Variants,
        catalog_chunk_len(target),
        input::parse_variant_item,
    )?;
    let mut counts = UpsertCounts::default();
    let mut sent = 0;
    while let Some(chunk) = chunks.next().await? {
        let len = chunk.len();
        let got = target.upsert_variants(chunk).await.map_err(|source| {
            refused(format!("variants {}..{}", sent, sent + len), source, |d| {
                d.index.map(|i| format!("variant {}", sent + i))
            })
        })?;
        counts.upserted += got.upserted;
        counts.replayed += got.replayed;
        sent += len;
        bar.inc(len as u64);
    }
    bar.finish_and_clear();
    Ok(counts)
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

/// Checks a listings file for `channel`: CSV with a header row (columns
/// sku, rank and any number of `external.<key>`; empty cells mean absent)
/// or a JSON array of `{"sku", "external", "rank"}`. Returns how many
/// listings it holds.
pub async fn check_listings(path: &Path, channel: &ChannelId) -> Result<usize, ImportError> {
    check_items(
        path,
        CatalogKind::Listings,
        |item| input::parse_listing_item(channel, item),
        |l| l.sku.to_string(),
    )
    .await
}

/// Reads a whole listings file (checked first); for small files and tests.
pub async fn read_listings(
    path: &Path,
    channel: &ChannelId,
) -> Result<Vec<ListingRecord>, ImportError> {
    check_listings(path, channel).await?;
    let mut chunks = Chunks::open(path, CatalogKind::Listings, usize::MAX, |item: &Value| {
        input::parse_listing_item(channel, item)
    })?;
    Ok(chunks.next().await?.unwrap_or_default())
}

/// Sends a checked listings file of `total` items for one channel in
/// chunks, streaming it; returns how many were upserted. Each chunk's
/// desired channel states are refreshed in bulk with it.
pub async fn send_listings(
    target: &Target,
    channel: &ChannelId,
    path: &Path,
    total: usize,
) -> Result<usize, ImportError> {
    let bar = progress_bar(
        total as u64,
        "{spinner} listings {pos}/{len} [{bar:40}] {eta}",
    );
    let mut chunks = Chunks::open(
        path,
        CatalogKind::Listings,
        catalog_chunk_len(target),
        |item: &Value| input::parse_listing_item(channel, item),
    )?;
    let mut upserted = 0;
    let mut sent = 0;
    while let Some(chunk) = chunks.next().await? {
        let len = chunk.len();
        upserted += target
            .upsert_listings(channel.as_str(), chunk)
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
    Ok(upserted)
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

    #[tokio::test]
    async fn csv_and_json_variants() {
        let (_d, csv) = file_with(
            "v.csv",
            "sku,title,product_id,gtin\nTEE-M,Tee M,TEE,8712345678906\nTEE-L,,TEE,\n",
        );
        let variants = read_variants(&csv).await.unwrap();
        assert_eq!(variants.len(), 2);
        assert_eq!(variants[1].title, None);
        assert_eq!(variants[0].gtin.as_deref(), Some("8712345678906"));
        let (_d, json) = file_with("v.json", r#"[{"sku": "A"}, {"sku": "B", "title": "b"}]"#);
        assert_eq!(read_variants(&json).await.unwrap().len(), 2);
        // No extension: the first character says JSON or CSV.
        let (_d, sniffed) = file_with("v", "  \n[{\"sku\": \"A\"}]");
        assert_eq!(check_variants(&sniffed).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn bad_variant_files_name_the_place() {
        let cases = [
            ("v.csv", "sku,colour\nA,red\n", "unknown column \"colour\""),
            ("v.csv", "sku,gtin\nA,123\n", "line 2: gtin:"),
            (
                "v.csv",
                "sku\nA\nA\n",
                "line 3: sku \"A\" appears twice (first at line 2)",
            ),
            (
                "v.json",
                r#"[{"sku": "A", "size": "M"}]"#,
                "item 0: size: unknown field",
            ),
            ("v.json", r#"{"sku": "A"}"#, "must hold an array"),
            ("v.json", r#"[{"sku": "A"}"#, "not valid JSON"),
            ("v.json", r#"[{"sku": "A"}] x"#, "not valid JSON"),
        ];
        for (name, text, expect) in cases {
            let (_d, path) = file_with(name, text);
            let err = read_variants(&path).await.unwrap_err().to_string();
            assert!(err.contains(expect), "{err:?} lacks {expect:?}");
        }
    }

    #[tokio::test]
    async fn listings_stream_in_chunks() {
        let channel = ChannelId::parse("shop").unwrap();
        let mut text = String::from("sku,rank,external.id\n");
        for i in 0..2_500 {
            text.push_str(&format!("SKU-{i},{},{i}\n", i % 3));
        }
        let (_d, path) = file_with("l.csv", &text);
        assert_eq!(check_listings(&path, &channel).await.unwrap(), 2_500);
        let mut chunks = Chunks::open(&path, CatalogKind::Listings, 1_000, |item: &Value| {
            input::parse_listing_item(&channel, item)
        })
        .unwrap();
        let mut lens = Vec::new();
        while let Some(chunk) = chunks.next().await.unwrap() {
            lens.push(chunk.len());
            assert_eq!(
                chunk[0].external["id"],
                Value::String(format!("{}", (lens.len() - 1) * 1_000))
            );
        }
        assert_eq!(lens, [1_000, 1_000, 500]);
        let (_d, dup) = file_with("l.json", r#"[{"sku": "A"}, {"sku": "B"}, {"sku": "A"}]"#);
        let err = check_listings(&dup, &channel)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("item 2: sku \"A\" appears twice (first at item 0)"),
            "{err}"
        );
    }
}
