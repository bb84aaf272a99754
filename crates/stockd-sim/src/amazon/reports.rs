//! Reports API 2021-06-30 with `GET_MERCHANT_LISTINGS_ALL_DATA`: `createReport` (202
//! `reportId`), `getReport` (IN_QUEUE → IN_PROGRESS → DONE, or FATAL/CANCELLED), `cancelReport`,
//! `getReportDocument` (a pre-signed URL valid five minutes, optionally GZIP) and the
//! tab-separated listings file with Amazon's header row.
//!
//! Sources:
//! - Model: `models/reports-api-model/reports_2021-06-30.json` in
//!   <https://github.com/amzn/selling-partner-api-models> and
//!   <https://developer-docs.amazon.com/sp-api/docs/reports-api-v2021-06-30-reference>.
//! - Retrieving a report, the five-minute URL and `compressionAlgorithm`:
//!   <https://developer-docs.amazon.com/sp-api/docs/retrieve-a-report>.
//! - The report type and its columns:
//!   <https://developer-docs.amazon.com/sp-api/docs/report-type-values-inventory> and
//!   <https://developer-docs.amazon.com/sp-api/docs/inventory-reports-attributes>.
//! - Rate limits (createReport 0.0167/s burst 15, getReport 2/s burst 15, getReportDocument
//!   0.0167/s burst 15, cancelReport 0.0222/s burst 10):
//!   <https://developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-limits>.
//!
//! The report is a snapshot of the listings taken when processing ends. A report that would have
//! no rows ends CANCELLED ("automatic cancellation if there is no data to return").

use super::*;

/// The one report type this simulator generates.
pub const LISTINGS_REPORT: &str = "GET_MERCHANT_LISTINGS_ALL_DATA";

/// The header row of `GET_MERCHANT_LISTINGS_ALL_DATA`
/// (<https://developer-docs.amazon.com/sp-api/docs/inventory-reports-attributes>).
pub const LISTINGS_REPORT_COLUMNS: [&str; 29] = [
    "item-name",
    "item-description",
    "listing-id",
    "seller-sku",
    "price",
    "quantity",
    "open-date",
    "image-url",
    "item-is-marketplace",
    "product-id-type",
    "zshop-shipping-fee",
    "item-note",
    "item-condition",
    "zshop-category1",
    "zshop-browse-path",
    "zshop-storefront-feature",
    "asin1",
    "asin2",
    "asin3",
    "will-ship-internationally",
    "expedited-shipping",
    "zshop-boldface",
    "product-id",
    "bid-for-featured-placement",
    "add-delete",
    "pending-quantity",
    "fulfillment-channel",
    "merchant-shipping-group",
    "status",
];

/// Pre-signed report URLs expire after five minutes
/// (<https://developer-docs.amazon.com/sp-api/docs/retrieve-a-report>).
pub(super) const DOCUMENT_URL_TTL: Duration = Duration::from_secs(300);

pub(super) struct Report {
    pub(super) id: String,
    pub(super) report_type: String,
    pub(super) marketplace_ids: Vec<Value>,
    pub(super) created: DateTime<Utc>,
    pub(super) started: Option<DateTime<Utc>>,
    pub(super) ended: Option<DateTime<Utc>>,
    pub(super) status: FeedStatus,
    pub(super) document: Option<String>,
}

/// A generated report document: its bytes as served and whether they are GZIP.
pub(super) struct ReportDocument {
    pub(super) body: Vec<u8>,
    pub(super) gzip: bool,
}

pub(super) fn report_json(r: &Report) -> Value {
    let mut m = Map::new();
    m.insert("reportId".into(), json!(r.id));
    m.insert("reportType".into(), json!(r.report_type));
    m.insert(
        "marketplaceIds".into(),
        Value::Array(r.marketplace_ids.clone()),
    );
    m.insert("createdTime".into(), json!(ts(&r.created)));
    m.insert("processingStatus".into(), json!(r.status.as_str()));
    if let Some(t) = &r.started {
        m.insert("processingStartTime".into(), json!(ts(t)));
    }
    if let Some(t) = &r.ended {
        m.insert("processingEndTime".into(), json!(ts(t)));
    }
    if let Some(d) = &r.document {
        m.insert("reportDocumentId".into(), json!(d));
    }
    Value::Object(m)
}

fn report_not_found() -> Response {
    amz_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The requested report was not found.",
        "",
    )
}

/// A field of the flat file: tabs and line breaks would break the row.
fn cell(s: &str) -> String {
    s.replace(['\t', '\r', '\n'], " ")
}

pub(super) async fn create_report(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = "createReport";
    let r = async {
        sim.gate(op, &headers).await?;
        let v = parse_body(&body)?;
        let Some(report_type) = v.get("reportType").and_then(Value::as_str) else {
            return Err(invalid_input("reportType is required."));
        };
        let mps = match v.get("marketplaceIds").and_then(Value::as_array) {
            Some(a) if (1..=25).contains(&a.len()) && a.iter().all(Value::is_string) => a.clone(),
            _ => {
                return Err(invalid_input(
                    "marketplaceIds is required and takes 1 to 25 marketplace ids.",
                ))
            }
        };
        if !mps
            .iter()
            .any(|m| m.as_str() == Some(sim.config.marketplace_id.as_str()))
        {
            return Err(invalid_input(
                "The seller is not registered in the requested marketplace.",
            ));
        }
        let id = {
            let mut st = lock(&sim.state);
            st.next_report += 1;
            let id = format!("{}", 62_700_019_000u64 + st.next_report);
            st.reports.insert(
                id.clone(),
                Report {
                    id: id.clone(),
                    report_type: report_type.to_string(),
                    marketplace_ids: mps,
                    created: sim.now(),
                    started: None,
                    ended: None,
                    status: FeedStatus::InQueue,
                    document: None,
                },
            );
            id
        };
        sim.schedule_report(id.clone());
        Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({"reportId": id}),
        ))
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

pub(super) async fn get_report(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let op = "getReport";
    let r = async {
        sim.gate(op, &headers).await?;
        let st = lock(&sim.state);
        match st.reports.get(&id) {
            Some(r) => Ok(json_response(StatusCode::OK, &report_json(r))),
            None => Err(report_not_found()),
        }
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

/// Only a report still IN_QUEUE can be cancelled (reports_2021-06-30.json `cancelReport`).
pub(super) async fn cancel_report(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let op = "cancelReport";
    let r = async {
        sim.gate(op, &headers).await?;
        let mut st = lock(&sim.state);
        let Some(r) = st.reports.get_mut(&id) else {
            return Err(report_not_found());
        };
        if r.status != FeedStatus::InQueue {
            return Err(invalid_input(
                "Only reports in the IN_QUEUE status can be cancelled.",
            ));
        }
        r.status = FeedStatus::Cancelled;
        r.ended = Some(sim.now());
        Ok(StatusCode::OK.into_response())
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

pub(super) async fn get_report_document(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let op = "getReportDocument";
    let r = async {
        sim.gate(op, &headers).await?;
        let mut st = lock(&sim.state);
        let Some(gzip) = st.report_docs.get(&id).map(|d| d.gzip) else {
            return Err(amz_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The requested report document was not found.",
                "",
            ));
        };
        // Each answer carries a fresh pre-signed URL.
        let token = sim.core.uuid();
        st.report_urls
            .retain(|_, (_, issued)| issued.elapsed() < DOCUMENT_URL_TTL);
        st.report_urls
            .insert(token.clone(), (id.clone(), Instant::now()));
        let url = format!(
            "{}/s3/report-documents/{id}?X-Amz-Expires={}&X-Amz-Signature={token}",
            sim.base_url,
            DOCUMENT_URL_TTL.as_secs()
        );
        let mut body = json!({"reportDocumentId": id, "url": url});
        if gzip {
            body["compressionAlgorithm"] = json!("GZIP");
        }
        Ok(json_response(StatusCode::OK, &body))
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

/// The pre-signed S3 URL: no access token; expired or unknown signatures get S3's 403.
pub(super) async fn download_report(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = parse_form_urlencoded(query.as_deref().unwrap_or(""));
    let token = pairs
        .iter()
        .find(|(k, _)| k == "X-Amz-Signature")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let st = lock(&sim.state);
    let valid = st
        .report_urls
        .get(&token)
        .is_some_and(|(doc, issued)| *doc == id && issued.elapsed() < DOCUMENT_URL_TTL);
    if !valid {
        let mut r = (
            StatusCode::FORBIDDEN,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        )
            .into_response();
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/xml"));
        return r;
    }
    match st.report_docs.get(&id) {
        Some(d) => {
            let mut r = (StatusCode::OK, d.body.clone()).into_response();
            let ct = if d.gzip {
                "application/octet-stream"
            } else {
                "text/tab-separated-values; charset=UTF-8"
            };
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static(ct));
            r
        }
        None => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
    }
}

impl Amazon {
    pub(super) fn schedule_report(self: &Arc<Self>, id: String) {
        let sim = Arc::clone(self);
        let mut stop = self.core.shutdown_signal();
        let first = self.config.report_delay / 2;
        let second = self.config.report_delay.saturating_sub(first);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(first) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            {
                let mut st = lock(&sim.state);
                let Some(r) = st.reports.get_mut(&id) else {
                    return;
                };
                if r.status != FeedStatus::InQueue {
                    return;
                }
                r.status = FeedStatus::InProgress;
                r.started = Some(sim.now());
            }
            tokio::select! {
                _ = tokio::time::sleep(second) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            sim.finish_report(&id);
        });
    }

    /// The listings file: the header row, then one row per listing, snapshot at this moment.
    pub(super) fn listings_report(&self, st: &AmzState) -> String {
        let mut out = LISTINGS_REPORT_COLUMNS.join("\t");
        out.push('\n');
        for l in st.listings.values() {
            let q = l.quantity();
            let name = l
                .attrs
                .get("item_name")
                .and_then(|v| v.pointer("/0/value"))
                .and_then(Value::as_str)
                .unwrap_or(&l.sku)
                .to_string();
            let open_date = l.created.format("%Y-%m-%d %H:%M:%S UTC").to_string();
            let listing_id = format!(
                "{}{}",
                l.created.format("%m%d"),
                l.asin.get(2..).unwrap_or("")
            );
            let row: [String; 29] = [
                cell(&name),
                String::new(),
                listing_id,
                cell(&l.sku),
                String::new(),
                q.to_string(),
                open_date,
                String::new(),
                "y".into(),
                "1".into(),
                String::new(),
                String::new(),
                "11".into(),
                String::new(),
                String::new(),
                String::new(),
                l.asin.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                l.asin.clone(),
                String::new(),
                String::new(),
                "0".into(),
                "DEFAULT".into(),
                "Migrated Template".into(),
                if q > 0 { "Active" } else { "Inactive" }.into(),
            ];
            out.push_str(&row.join("\t"));
            out.push('\n');
        }
        out
    }

    pub(super) fn finish_report(&self, id: &str) {
        let mut st = lock(&self.state);
        let forced = st.report_outcomes.pop_front();
        let Some(report_type) = st.reports.get(id).map(|r| r.report_type.clone()) else {
            return;
        };
        let error_doc = |message: &str| json!({"errorDetails": message}).to_string().into_bytes();
        let (status, body, gzip) = match forced {
            Some(FeedStatus::Cancelled) => {
                Counters::add(&self.core.counters.injected_faults, 1);
                (FeedStatus::Cancelled, None, false)
            }
            Some(FeedStatus::Fatal) => {
                Counters::add(&self.core.counters.injected_faults, 1);
                (
                    FeedStatus::Fatal,
                    Some(error_doc(
                        "Injected fatal error: the report could not be generated.",
                    )),
                    false,
                )
            }
            _ if report_type != LISTINGS_REPORT => (
                FeedStatus::Fatal,
                Some(error_doc(&format!(
                    "The report type {report_type} is not supported by this simulator."
                ))),
                false,
            ),
            _ if st.listings.is_empty() => (FeedStatus::Cancelled, None, false),
            _ => {
                let text = self.listings_report(&st);
                if self.config.report_gzip {
                    (FeedStatus::Done, Some(gzip_stored(text.as_bytes())), true)
                } else {
                    (FeedStatus::Done, Some(text.into_bytes()), false)
                }
            }
        };
        let document = body.map(|body| {
            let doc = format!("amzn1.spdoc.1.4.eu.{}", self.core.uuid());
            st.report_docs
                .insert(doc.clone(), ReportDocument { body, gzip });
            doc
        });
        if let Some(r) = st.reports.get_mut(id) {
            r.status = status;
            r.ended = Some(self.now());
            r.document = document;
        }
    }
}

/// A GZIP member (RFC 1952) holding `data` in stored DEFLATE blocks (RFC 1951 §3.2.4): valid
/// GZIP that any decompressor reads, without a compressor in the simulator.
pub(super) fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE 802.3), as GZIP's trailer carries it.
pub(super) fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `{"outcomes": ["FATAL", "CANCELLED", "DONE"]}`: the next reports to finish end this way.
pub(super) async fn sim_report_outcomes(State(sim): State<Sim>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(list) = v.get("outcomes").and_then(Value::as_array) else {
        return SimError::BadRequest("expected {\"outcomes\": [...]}".into()).to_response_pub();
    };
    let mut parsed = Vec::new();
    for x in list {
        parsed.push(match x.as_str() {
            Some("FATAL") => FeedStatus::Fatal,
            Some("CANCELLED") => FeedStatus::Cancelled,
            Some("DONE") => FeedStatus::Done,
            _ => {
                return SimError::BadRequest("outcomes are FATAL, CANCELLED or DONE".into())
                    .to_response_pub()
            }
        });
    }
    let mut st = lock(&sim.state);
    st.report_outcomes.extend(parsed);
    json_response(StatusCode::OK, &json!({"queued": st.report_outcomes.len()}))
}
