//! The bulk read: a `GET_MERCHANT_LISTINGS_ALL_DATA` report through the
//! Reports API 2021-06-30, followed to its document and parsed by header
//! name.
//!
//! - `createReport` (`POST /reports/2021-06-30/reports`, 202 `reportId`),
//!   `getReport` until `processingStatus` is `DONE`, `FATAL` or `CANCELLED`,
//!   then `getReportDocument` and the pre-signed `url`, which expires after
//!   five minutes and is therefore asked for right before the download; a
//!   `compressionAlgorithm: GZIP` document is gunzipped
//!   (<https://developer-docs.amazon.com/sp-api/docs/reports-api-v2021-06-30-reference>,
//!   <https://developer-docs.amazon.com/sp-api/docs/retrieve-a-report>).
//! - `CANCELLED` without a request to cancel is Amazon's "automatic
//!   cancellation if there is no data to return": the channel shows no
//!   listings. `FATAL` is an error carrying the report's error document when
//!   it has one.
//! - The file is tab-separated with a header row; columns are found by name
//!   (`seller-sku`, `quantity`, `fulfillment-channel`, `status`,
//!   <https://developer-docs.amazon.com/sp-api/docs/inventory-reports-attributes>).
//!   Rows of Amazon-fulfilled listings (`fulfillment-channel` other than
//!   `DEFAULT`) carry no merchant quantity: their level is unknown.
//!   Documents that are not UTF-8 are read as ISO-8859-1 (the encoding of
//!   some marketplaces' flat files, UNCONFIRMED per marketplace).
//! - Rates (<https://developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-limits>):
//!   createReport 0.0167/s burst 15, getReport 2/s burst 15,
//!   getReportDocument 0.0167/s burst 15; a 429 while following the report is
//!   waited out on the operation's bucket.

use super::*;
use crate::ShownListing;

/// The report that lists every listing of the seller with its quantity.
pub const LISTINGS_REPORT: &str = "GET_MERCHANT_LISTINGS_ALL_DATA";
const REPORTS_PREFIX: &str = "/reports/2021-06-30";
/// Progress is told every this many rows.
const PROGRESS_EVERY: u64 = 1000;

/// One bulk read's request count.
#[derive(Default)]
struct Counted {
    requests: u64,
}

impl Amazon {
    /// `call` until it is not throttled (the bucket waits the throttle out),
    /// up to `deadline`.
    async fn call_patiently(
        &self,
        count: &mut Counted,
        op: Op,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
        deadline: Instant,
    ) -> Result<HttpResponse, ChannelError> {
        loop {
            count.requests += 1;
            match self.call(op, method.clone(), path, body).await {
                Err(error) if error.class == ErrorClass::RateLimited => {
                    let wait = error.retry_after.unwrap_or(Duration::from_secs(1));
                    if Instant::now() + wait > deadline {
                        return Err(error);
                    }
                }
                result => return result,
            }
        }
    }

    /// Reads the seller's listings report for the configured marketplace.
    pub(super) async fn read_listings_report(
        &self,
        progress: BulkProgress<'_>,
    ) -> Result<BulkRead, ChannelError> {
        let started_at = (self.clock)();
        let deadline = Instant::now() + self.config.report_timeout;
        let mut count = Counted::default();
        let report_id = self.create_report(&mut count, deadline).await?;
        let document_id = loop {
            let (status, document) = self.report_status(&mut count, &report_id, deadline).await?;
            match status.as_str() {
                "DONE" => {
                    break document.ok_or_else(|| {
                        ChannelError::new(
                            ErrorClass::Retryable,
                            "no_report_document",
                            format!("report {report_id} is DONE without a document"),
                        )
                    })?
                }
                "CANCELLED" => {
                    progress(0);
                    return Ok(BulkRead {
                        started_at,
                        listings: Vec::new(),
                        channel_requests: count.requests,
                    });
                }
                "FATAL" => {
                    let details = match document {
                        Some(document) => self
                            .report_document(&mut count, &document, deadline)
                            .await
                            .map(|text| format!(": {}", excerpt(&text)))
                            .unwrap_or_default(),
                        None => String::new(),
                    };
                    return Err(ChannelError::new(
                        ErrorClass::Retryable,
                        "report_fatal",
                        format!("listings report {report_id} ended FATAL{details}"),
                    ));
                }
                _ => {}
            }
            let next = Instant::now() + self.config.report_poll_interval;
            if next > deadline {
                return Err(ChannelError::new(
                    ErrorClass::Retryable,
                    "report_timeout",
                    format!(
                        "listings report {report_id} still {status} after {:?}",
                        self.config.report_timeout
                    ),
                ));
            }
            tokio::time::sleep_until(next).await;
        };
        let text = self
            .report_document(&mut count, &document_id, deadline)
            .await?;
        let listings = parse_listings_report(&text, progress)?;
        Ok(BulkRead {
            started_at,
            listings,
            channel_requests: count.requests,
        })
    }

    async fn create_report(
        &self,
        count: &mut Counted,
        deadline: Instant,
    ) -> Result<String, ChannelError> {
        let body = json!({
            "reportType": LISTINGS_REPORT,
            "marketplaceIds": [self.config.marketplace_id],
        });
        let response = self
            .call_patiently(
                count,
                Op::CreateReport,
                http::Method::POST,
                &format!("{REPORTS_PREFIX}/reports"),
                Some(&body),
                deadline,
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(error_from(&response, "createReport"));
        }
        let created = json_body(&response, "createReport")?;
        str_field(&created, "reportId")
            .map(str::to_owned)
            .ok_or_else(|| invalid_response(&response, "createReport answer has no reportId"))
    }

    /// One `getReport`: the processing status and the document id. Throttles
    /// and transient failures are waited out until `deadline`.
    async fn report_status(
        &self,
        count: &mut Counted,
        report_id: &str,
        deadline: Instant,
    ) -> Result<(String, Option<String>), ChannelError> {
        let path = format!("{REPORTS_PREFIX}/reports/{}", percent_encode(report_id));
        loop {
            let result = self
                .call_patiently(
                    count,
                    Op::GetReport,
                    http::Method::GET,
                    &path,
                    None,
                    deadline,
                )
                .await;
            let error = match result {
                Ok(response) if (200..300).contains(&response.status) => {
                    let report = json_body(&response, "getReport")?;
                    let status = str_field(&report, "processingStatus")
                        .ok_or_else(|| {
                            invalid_response(&response, "getReport answer has no processingStatus")
                        })?
                        .to_owned();
                    return Ok((
                        status,
                        str_field(&report, "reportDocumentId").map(str::to_owned),
                    ));
                }
                Ok(response) => error_from(&response, "getReport"),
                Err(error) => error,
            };
            let next = Instant::now() + self.config.report_poll_interval;
            if error.class != ErrorClass::Retryable || next > deadline {
                return Err(error);
            }
            tokio::time::sleep_until(next).await;
        }
    }

    /// `getReportDocument`, then the download (asked for again once when the
    /// pre-signed URL was refused), gunzipped and decoded.
    async fn report_document(
        &self,
        count: &mut Counted,
        document_id: &str,
        deadline: Instant,
    ) -> Result<String, ChannelError> {
        let path = format!("{REPORTS_PREFIX}/documents/{}", percent_encode(document_id));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let response = self
                .call_patiently(
                    count,
                    Op::GetReportDocument,
                    http::Method::GET,
                    &path,
                    None,
                    deadline,
                )
                .await?;
            if !(200..300).contains(&response.status) {
                return Err(error_from(&response, "getReportDocument"));
            }
            let document = json_body(&response, "getReportDocument")?;
            let url = str_field(&document, "url").ok_or_else(|| {
                invalid_response(&response, "getReportDocument answer has no url")
            })?;
            let gzip = match str_field(&document, "compressionAlgorithm") {
                None => false,
                Some("GZIP") => true,
                Some(other) => {
                    return Err(ChannelError::new(
                        ErrorClass::Permanent,
                        "unsupported_compression",
                        format!("report document compressed with {other}"),
                    ))
                }
            };
            count.requests += 1;
            let download = match self.document_transfer(http::Method::GET, url, None).await {
                Ok(download) => download,
                // An expired or refused URL: a fresh one helps, once.
                Err(error) if error.status == Some(403) && attempts < 2 => continue,
                Err(error) => return Err(error),
            };
            let bytes = if gzip {
                crate::gzip::gunzip(&download.body).map_err(|e| {
                    ChannelError::new(
                        ErrorClass::Retryable,
                        "invalid_report",
                        format!("report document is not valid GZIP: {e}"),
                    )
                })?
            } else {
                download.body
            };
            return Ok(decode_text(bytes));
        }
    }
}

/// UTF-8 (a byte-order mark dropped), else ISO-8859-1.
fn decode_text(bytes: Vec<u8>) -> String {
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    };
    match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(500) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The listings of a `GET_MERCHANT_LISTINGS_ALL_DATA` file.
pub fn parse_listings_report(
    text: &str,
    progress: BulkProgress<'_>,
) -> Result<Vec<ShownListing>, ChannelError> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split('\t')
        .map(str::trim)
        .collect();
    let column = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let sku_at = column(&["seller-sku", "sku"]).ok_or_else(|| {
        ChannelError::new(
            ErrorClass::Retryable,
            "invalid_report",
            "listings report has no seller-sku column",
        )
    })?;
    let quantity_at = column(&["quantity"]);
    let channel_at = column(&["fulfillment-channel"]);
    let mut listings = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split('\t').collect();
        let cell = |at: Option<usize>| at.and_then(|i| cells.get(i)).map(|c| c.trim());
        let Some(sku) = cell(Some(sku_at)).filter(|s| !s.is_empty()) else {
            continue;
        };
        let merchant_fulfilled = cell(channel_at)
            .map(|c| c.is_empty() || c.eq_ignore_ascii_case("DEFAULT"))
            .unwrap_or(true);
        let quantity = if merchant_fulfilled {
            cell(quantity_at).and_then(|q| q.parse::<i64>().ok())
        } else {
            None
        };
        listings.push(ShownListing {
            key: sku.to_owned(),
            channel_sku: Some(sku.to_owned()),
            level: ChannelLevel {
                quantity,
                availability: quantity.map(|q| {
                    if q > 0 {
                        Availability::InStock
                    } else {
                        Availability::OutOfStock
                    }
                }),
            },
        });
        if (listings.len() as u64).is_multiple_of(PROGRESS_EVERY) {
            progress(listings.len() as u64);
        }
    }
    progress(listings.len() as u64);
    Ok(listings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_progress(_: u64) {}

    #[test]
    fn columns_are_found_by_name_and_amazon_fulfilled_rows_have_no_quantity() {
        let text = "item-name\tasin1\tseller-sku\tstatus\tfulfillment-channel\tquantity\n\
                    Mug\tB000000001\tMUG-1\tActive\tDEFAULT\t12\n\
                    Cup\tB000000002\tCUP-1\tInactive\tDEFAULT\t0\n\
                    Pan\tB000000003\tPAN-1\tActive\tAMAZON_EU\t\n\
                    \n\
                    Pot\tB000000004\tPOT-1\tIncomplete\tDEFAULT\t\n";
        let seen = std::sync::atomic::AtomicU64::new(0);
        let progress = |n: u64| seen.store(n, std::sync::atomic::Ordering::Relaxed);
        let listings = parse_listings_report(text, &progress).unwrap();
        let shown: Vec<(&str, Option<i64>, Option<Availability>)> = listings
            .iter()
            .map(|l| (l.key.as_str(), l.level.quantity, l.level.availability))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("MUG-1", Some(12), Some(Availability::InStock)),
                ("CUP-1", Some(0), Some(Availability::OutOfStock)),
                ("PAN-1", None, None),
                ("POT-1", None, None),
            ]
        );
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 4);
    }

    #[test]
    fn a_file_without_a_seller_sku_column_is_an_error() {
        let error = parse_listings_report("item-name\tquantity\nMug\t3\n", &no_progress)
            .expect_err("no key column");
        assert_eq!(error.code, "invalid_report");
        let error = parse_listings_report("", &no_progress).expect_err("empty file");
        assert_eq!(error.code, "invalid_report");
    }

    #[test]
    fn utf8_with_a_byte_order_mark_and_latin1_are_decoded() {
        let mut bytes = "\u{feff}seller-sku\tquantity\nCAFÉ-1\t2\n"
            .as_bytes()
            .to_vec();
        assert_eq!(
            decode_text(bytes.clone()),
            "seller-sku\tquantity\nCAFÉ-1\t2\n"
        );
        bytes = b"seller-sku\tquantity\nCAF\xc9-1\t2\n".to_vec();
        let text = decode_text(bytes);
        let listings = parse_listings_report(&text, &no_progress).unwrap();
        assert_eq!(listings[0].key, "CAFÉ-1");
        assert_eq!(listings[0].level.quantity, Some(2));
    }
}
