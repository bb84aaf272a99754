//! The v10 offers export: everything bol shows of the retailer's offers in
//! one CSV file, for reconciliation.
//!
//! 1. `POST /retailer/offers/export` with `{"format":"CSV"}`
//!    (`post-offer-export` / `CreateOfferExportRequest` in
//!    `specs/bol/retailer-v10.json`; `CSV` is the only format) answers 202
//!    with a `ProcessStatus` of event type `CREATE_OFFER_EXPORT`
//!    (<https://api.bol.com/retailer/public/Retailer-API/demo/v10-OFFERS.html>).
//! 2. `GET /shared/process-status/{id}` (`specs/bol/shared-v10.json`) every
//!    `process_poll_interval` until SUCCESS; the report id is the status'
//!    `entityId` (documented for the sibling unpublished-offer report,
//!    <https://api.bol.com/retailer/public/Retailer-API/v10/functional/retailer-api/offers.html>;
//!    UNCONFIRMED for the export). FAILURE and TIMEOUT fail the read
//!    (retryable); still PENDING after `export_timeout` too.
//! 3. `GET /retailer/offers/export/{report-id}` with
//!    `Accept: application/vnd.retailer.v10+csv` (`get-offer-export`)
//!    returns the file. Its header, as in bol's v10 demo
//!    (<https://api.bol.com/retailer/public/Retailer-API/demo/v10-OFFERS.html>):
//!    `offerId,ean,conditionName,conditionCategory,conditionComment,
//!    bundlePricesPrice,fulfilmentDeliveryCode,stockAmount,onHoldByRetailer,
//!    fulfilmentType,mutationDateTime,referenceCode` (third-party clients
//!    also read a trailing `correctedStock`). Columns are found by header
//!    name and extra columns are ignored; `offerId` and `stockAmount` are
//!    required.
//!
//! The file's `stockAmount` "is not always the current stock"
//! (<https://api.bol.com/retailer/public/Retailer-API/v3/functional/offers.html>):
//! the reconciliation treats a difference as a candidate and confirms it
//! with `GET /retailer/offers/{offer-id}` before correcting. Both endpoints
//! are limited to 10 an hour in bol's older published limits (UNCONFIRMED
//! today, <https://api.bol.com/retailer/public/ratelimits>); a 429 waits
//! its `Retry-After` unless that is longer than `export_timeout`.

use super::{
    json_of, path_segment, process_state, process_url, string_value, Bol, Endpoint, Media, Process,
    BODY_EXCERPT,
};
use crate::{
    BulkProgress, BulkRead, ChannelError, ChannelLevel, ErrorClass, HttpResponse, ShownListing,
};
use chrono::Utc;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// Attempts of one request of the export before the read fails.
const ATTEMPTS: u32 = 6;
/// Rows between two progress reports.
const PROGRESS_EVERY: usize = 1_000;

impl Bol {
    /// Requests, awaits and downloads an offers export.
    pub(super) async fn export_offers(
        &self,
        progress: BulkProgress<'_>,
    ) -> Result<BulkRead, ChannelError> {
        let started_at = Utc::now();
        let mut requests = 0u64;
        let deadline = Instant::now() + self.config.export_timeout;
        let url = format!("{}/retailer/offers/export", self.api());
        let body = json!({"format": "CSV"});
        let answer = self
            .export_call(
                &mut requests,
                deadline,
                Endpoint::OffersExport,
                http::Method::POST,
                &url,
                Media::V10,
                Some(&body),
                "offers export",
            )
            .await?;
        let mut status = json_of(&answer, "offers export")?;
        let report_id = loop {
            match process_state(&status) {
                Process::Success => {
                    break string_value(status.get("entityId")).ok_or_else(|| {
                        export_error("bad_response", "offers export succeeded without entityId")
                    })?
                }
                Process::Failure(message) => {
                    return Err(export_error(
                        "export_failed",
                        &format!("offers export failed: {message}"),
                    ))
                }
                Process::Timeout => {
                    return Err(export_error(
                        "export_timeout",
                        "offers export timed out at bol",
                    ))
                }
                Process::Pending => {}
            }
            if Instant::now() >= deadline {
                return Err(export_error(
                    "export_pending",
                    &format!(
                        "offers export still pending after {:?}",
                        self.config.export_timeout
                    ),
                ));
            }
            let status_url = process_url(self.api(), &status).ok_or_else(|| {
                export_error("no_process_status", "offers export names no process status")
            })?;
            tokio::time::sleep(self.config.process_poll_interval).await;
            let answer = self
                .export_call(
                    &mut requests,
                    deadline,
                    Endpoint::ProcessStatus,
                    http::Method::GET,
                    &status_url,
                    Media::V10,
                    None,
                    "offers export status",
                )
                .await?;
            status = json_of(&answer, "offers export status")?;
        };
        progress(0);
        let file_url = format!(
            "{}/retailer/offers/export/{}",
            self.api(),
            path_segment(&report_id)
        );
        let file = self
            .export_call(
                &mut requests,
                deadline,
                Endpoint::ExportGet,
                http::Method::GET,
                &file_url,
                Media::V10Csv,
                None,
                "offers export file",
            )
            .await?;
        let listings = parse_export(&file, progress)?;
        Ok(BulkRead {
            started_at,
            listings,
            channel_requests: requests,
        })
    }

    /// One request of the export, retried on rate limits and transient
    /// failures while the export's deadline allows.
    #[allow(clippy::too_many_arguments)]
    async fn export_call(
        &self,
        requests: &mut u64,
        deadline: Instant,
        endpoint: Endpoint,
        method: http::Method,
        url: &str,
        media: Media,
        body: Option<&Value>,
        what: &str,
    ) -> Result<HttpResponse, ChannelError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            *requests += 1;
            let error = match self
                .call(endpoint, method.clone(), url, media, body, what)
                .await
            {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            let wait = match error.class {
                ErrorClass::Permanent | ErrorClass::Stale => return Err(error),
                // The endpoint's bucket is blocked for Retry-After: the next
                // call waits it out.
                ErrorClass::RateLimited => Duration::ZERO,
                ErrorClass::Retryable => Duration::from_millis(250 << attempt.min(6)),
            };
            let until = Instant::now() + wait + error.retry_after.unwrap_or_default();
            if attempt >= ATTEMPTS || until > deadline {
                return Err(error);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

fn export_error(code: &str, message: &str) -> ChannelError {
    ChannelError::new(ErrorClass::Retryable, code, message)
}

/// Reads the export file by its header names.
fn parse_export(
    file: &HttpResponse,
    progress: BulkProgress<'_>,
) -> Result<Vec<ShownListing>, ChannelError> {
    let bad = |message: String| {
        let mut error = ChannelError::new(ErrorClass::Retryable, "bad_export", message);
        error.status = Some(file.status);
        error.body = Some(file.body_excerpt(BODY_EXCERPT));
        error
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(file.body.as_slice());
    let headers = reader
        .headers()
        .map_err(|e| bad(format!("offers export header: {e}")))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().trim_start_matches('\u{feff}') == name)
    };
    let offer_id = column("offerId").ok_or_else(|| bad("offers export lacks offerId".into()))?;
    let stock =
        column("stockAmount").ok_or_else(|| bad("offers export lacks stockAmount".into()))?;
    let reference = column("referenceCode");
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(format!("offers export row: {e}")))?;
        let Some(key) = record
            .get(offer_id)
            .map(str::trim)
            .filter(|k| !k.is_empty())
        else {
            continue;
        };
        let quantity = record.get(stock).and_then(|s| s.trim().parse::<i64>().ok());
        let channel_sku = reference
            .and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        out.push(ShownListing {
            key: key.to_owned(),
            channel_sku,
            level: ChannelLevel {
                quantity,
                availability: None,
            },
        });
        if out.len() % PROGRESS_EVERY == 0 {
            progress(out.len() as u64);
        }
    }
    progress(out.len() as u64);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(body: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: http::HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_export_is_read_by_header_name() {
        let csv = "offerId,ean,conditionName,conditionCategory,conditionComment,bundlePricesPrice,\
                   fulfilmentDeliveryCode,stockAmount,onHoldByRetailer,fulfilmentType,\
                   mutationDateTime,referenceCode,correctedStock\n\
                   4ae7a221-65e7-a333-e620-3f8e1caab5c3,8785073983111,AS_NEW,SECONDHAND,\
                   \"scratched, boxed\",12.00,3-5d,7,false,FBR,2019-03-07 14:00:32.743 UTC,TEE-1,5\n\
                   b1,8785073983128,NEW,NEW,,9.99,1-2d,0,false,FBR,2019-03-07 14:00:32.743 UTC,,0\n";
        let seen = std::sync::Mutex::new(Vec::new());
        let report = |n: u64| seen.lock().unwrap().push(n);
        let rows = parse_export(&file(csv), &report).expect("parsed");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key, "4ae7a221-65e7-a333-e620-3f8e1caab5c3");
        assert_eq!(rows[0].channel_sku.as_deref(), Some("TEE-1"));
        assert_eq!(rows[0].level.quantity, Some(7));
        assert_eq!(rows[1].channel_sku, None);
        assert_eq!(rows[1].level.quantity, Some(0));
        assert_eq!(seen.lock().unwrap().last(), Some(&2));
        let missing = parse_export(&file("ean,stockAmount\n1,2\n"), &report);
        assert_eq!(missing.expect_err("no offerId").code, "bad_export");
    }
}
