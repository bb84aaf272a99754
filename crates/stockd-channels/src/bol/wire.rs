//! Reading bol.com's answers: path segments, values of loosely typed JSON
//! fields, problem bodies and their classification, process statuses.

use super::*;

/// Percent-encodes one path segment (offer ids are UUIDs; anything else is
/// escaped rather than trusted).
pub(super) fn path_segment(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

pub(super) fn string_value(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn int_value(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.fract() == 0.0)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn offer_id_of(external: &External) -> Result<String, ChannelError> {
    string_value(external.get("offer_id")).ok_or_else(|| {
        ChannelError::new(
            ErrorClass::Permanent,
            "missing_external_id",
            "listing has no bol offer_id",
        )
    })
}

/// The amount bol accepts (0..=999, `UpdateOfferStockRequest` in
/// `specs/bol/retailer-v10.json`).
pub fn stock_amount(quantity: i64) -> i64 {
    quantity.clamp(0, MAX_STOCK_AMOUNT)
}

/// The `Problem` body's detail and violations as one message (schema
/// `Problem` in `specs/bol/retailer-v10.json`).
pub(super) fn problem_message(response: &HttpResponse) -> Option<String> {
    let value: Value = serde_json::from_slice(&response.body).ok()?;
    let mut message = value
        .get("detail")
        .and_then(Value::as_str)
        .or_else(|| value.get("error_description").and_then(Value::as_str))
        .or_else(|| value.get("title").and_then(Value::as_str))
        .map(str::to_owned)?;
    if let Some(violations) = value.get("violations").and_then(Value::as_array) {
        let parts: Vec<String> = violations
            .iter()
            .filter_map(|v| {
                let name = v.get("name").and_then(Value::as_str).unwrap_or("?");
                let reason = v.get("reason").and_then(Value::as_str)?;
                Some(format!("{name}: {reason}"))
            })
            .collect();
        if !parts.is_empty() {
            message = format!("{message} ({})", parts.join("; "));
        }
    }
    Some(message)
}

/// Classifies a non-success answer (retryable 5xx:
/// <https://api.bol.com/retailer/public/Retailer-API/legal/definition-of-service-and-usage.html>;
/// 429: <https://api.bol.com/retailer/public/Retailer-API/ratelimits.html>).
pub(super) fn classify(response: &HttpResponse, what: &str) -> ChannelError {
    let status = response.status;
    let (class, code) = match status {
        429 => (ErrorClass::RateLimited, "rate_limited"),
        401 => (ErrorClass::Permanent, "unauthorized"),
        403 => (ErrorClass::Permanent, "forbidden"),
        404 => (ErrorClass::Permanent, "not_found"),
        406 | 415 => (ErrorClass::Permanent, "unsupported_media_type"),
        408 => (ErrorClass::Retryable, "timeout"),
        409 => (ErrorClass::Permanent, "conflict"),
        400..=499 => (ErrorClass::Permanent, "bad_request"),
        500..=599 => (ErrorClass::Retryable, "server_error"),
        _ => (ErrorClass::Retryable, "unexpected_status"),
    };
    let message = match problem_message(response) {
        Some(detail) => format!("{what}: HTTP {status}: {detail}"),
        None => format!("{what}: HTTP {status}"),
    };
    let mut error = ChannelError::new(class, code, message);
    error.status = Some(status);
    error.body = Some(response.body_excerpt(BODY_EXCERPT));
    if class == ErrorClass::RateLimited {
        error.retry_after = Some(response.retry_after().unwrap_or(Duration::from_secs(1)));
    }
    error
}

pub(super) fn json_of(response: &HttpResponse, what: &str) -> Result<Value, ChannelError> {
    serde_json::from_slice(&response.body).map_err(|e| {
        let mut error = ChannelError::new(
            ErrorClass::Retryable,
            "bad_response",
            format!("{what}: response is not JSON: {e}"),
        );
        error.status = Some(response.status);
        error.body = Some(response.body_excerpt(BODY_EXCERPT));
        error
    })
}

/// The state of an asynchronous process (`ProcessStatus` in
/// `specs/bol/shared-v10.json`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Process {
    Pending,
    Success,
    Failure(String),
    Timeout,
}

pub(super) fn process_state(status: &Value) -> Process {
    match status.get("status").and_then(Value::as_str) {
        Some(s) if s.eq_ignore_ascii_case("SUCCESS") => Process::Success,
        Some(s) if s.eq_ignore_ascii_case("FAILURE") => Process::Failure(
            status
                .get("errorMessage")
                .and_then(Value::as_str)
                .unwrap_or("process failed")
                .to_owned(),
        ),
        Some(s) if s.eq_ignore_ascii_case("TIMEOUT") => Process::Timeout,
        // PENDING, or anything unknown: keep following it.
        _ => Process::Pending,
    }
}

/// Where a process status is read: by `processStatusId`, else from a link
/// that points at a process status (the `rel` values are not listed in
/// `specs/bol/shared-v10.json`: UNCONFIRMED).
pub(super) fn process_url(api_url: &str, status: &Value) -> Option<String> {
    if let Some(id) = string_value(status.get("processStatusId")) {
        return Some(format!(
            "{api_url}/shared/process-status/{}",
            path_segment(&id)
        ));
    }
    status
        .get("links")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|l| l.get("href").and_then(Value::as_str))
        .find(|href| href.contains("/process-status/"))
        .map(|href| {
            if href.starts_with("http://") || href.starts_with("https://") {
                href.to_owned()
            } else {
                format!("{api_url}{href}")
            }
        })
}

pub(super) fn process_error(
    class: ErrorClass,
    code: &str,
    message: String,
    status: &Value,
) -> ChannelError {
    let mut error = ChannelError::new(class, code, message);
    error.body = Some(
        status
            .to_string()
            .chars()
            .take(BODY_EXCERPT)
            .collect::<String>(),
    );
    error
}
