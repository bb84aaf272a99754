//! The v10 offers export: `POST /retailer/offers/export` with `{"format":"CSV"}` answers 202
//! with a `CREATE_OFFER_EXPORT` process status; after `export_delay` the process reaches
//! SUCCESS with `entityId` = the report id, and the file is written from the offers as they
//! are at that moment (every offer of the account, whether or not a client knows it);
//! `GET /retailer/offers/export/{report-id}` with `Accept: application/vnd.retailer.v10+csv`
//! returns it until `export_retention` has passed, 404 (Problem) otherwise.
//!
//! Sources: `post-offer-export`, `get-offer-export` and `CreateOfferExportRequest` in
//! `specs/bol/retailer-v10.json` (deprecated in v10, still served); the CSV header and the
//! `mutationDateTime` format from bol's v10 demo,
//! <https://api.bol.com/retailer/public/Retailer-API/demo/v10-OFFERS.html>, plus the trailing
//! `correctedStock` third-party clients read (UNCONFIRMED); report id = `entityId` as
//! documented for the unpublished-offer report,
//! <https://api.bol.com/retailer/public/Retailer-API/v10/functional/retailer-api/offers.html>
//! (UNCONFIRMED for the export). Limits: 10 an hour for both endpoints in the older published
//! list (see `rate_limits`); the processing time and the file's retention are not published.

use super::http::{bad_request, not_found, vnd_json, Ctx};
use super::state::{round2, Action, Bol, BolState, NewProcess, EXPORT_EVENT};
use super::*;

/// The export file's media type (`get-offer-export`).
pub const MEDIA_V10_CSV: &str = "application/vnd.retailer.v10+csv";

/// The file's header, in bol's order.
const HEADER: &str = "offerId,ean,conditionName,conditionCategory,conditionComment,\
bundlePricesPrice,fulfilmentDeliveryCode,stockAmount,onHoldByRetailer,fulfilmentType,\
mutationDateTime,referenceCode,correctedStock";

impl Bol {
    pub(super) fn post_export(&self, ctx: &Ctx) -> Response {
        let body = match self.parse_body(ctx) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        match body.get("format") {
            Some(Value::String(f)) if f == "CSV" => {}
            Some(Value::String(f)) if !f.is_empty() => {
                return bad_request(
                    ctx.instance(),
                    vec![(
                        "format".into(),
                        format!("Request contains invalid value(s): '{f}', allowed values: CSV."),
                    )],
                )
            }
            _ => {
                return bad_request(
                    ctx.instance(),
                    vec![("format".into(), "Must not be null.".into())],
                )
            }
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let report_id = self.core.uuid();
        let v = self.create_process_after(
            &mut st,
            NewProcess {
                entity_id: report_id.clone(),
                event_type: EXPORT_EVENT,
                description: "Create an offer export.".into(),
                outcome: ProcessOutcome::Success,
                failure: String::new(),
                action: Action::Export { report_id },
            },
            self.config.export_delay,
        );
        vnd_json(StatusCode::ACCEPTED, MEDIA_V10, &v)
    }

    pub(super) fn get_export(&self, ctx: &Ctx, report_id: &str) -> Response {
        let file = {
            let mut st = lock(&self.state);
            self.settle(&mut st);
            match st.exports.get(report_id) {
                Some((_, file)) => file.clone(),
                None => return not_found(ctx.instance()),
            }
        };
        let mut r = (StatusCode::OK, file).into_response();
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static(MEDIA_V10_CSV));
        r
    }
}

/// One CSV field, quoted when it holds a comma, a quote or a line break.
fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// The export file of every offer as it is now.
pub(super) fn offers_csv(st: &BolState) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(64 + st.offers.len() * 160);
    out.push_str(HEADER);
    out.push('\n');
    for o in &st.offers {
        let _ = write!(
            out,
            "{},{},NEW,NEW,,{:.2},1-2d,{},{},FBR,{},",
            o.offer_id,
            o.ean,
            round2(o.unit_price),
            o.amount,
            o.on_hold,
            o.modified.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
        );
        field(&mut out, &o.reference);
        let _ = writeln!(out, ",{}", st.corrected(o));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_and_quotes_are_quoted() {
        let mut out = String::new();
        field(&mut out, "a,\"b\"");
        assert_eq!(out, "\"a,\"\"b\"\"\"");
        let mut plain = String::new();
        field(&mut plain, "TEE-1");
        assert_eq!(plain, "TEE-1");
    }
}
