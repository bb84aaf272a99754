//! Google's error JSON (`{"error": {code, message, status, details}}`,
//! <https://cloud.google.com/apis/design/errors>) and the OAuth token endpoint's error shape.

use super::*;

pub(super) fn gerr(code: StatusCode, status: &str, message: &str) -> Response {
    (
        code,
        Json(json!({"error": {"code": code.as_u16(), "message": message, "status": status}})),
    )
        .into_response()
}

pub(super) fn invalid(message: &str) -> Response {
    gerr(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

pub(super) fn not_found() -> Response {
    gerr(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "Requested entity was not found.",
    )
}

pub(super) fn not_found_route() -> Response {
    gerr(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested URL was not found on this server.",
    )
}

pub(super) fn quota_error(reason: &str, message: &str) -> Response {
    // 429 / RESOURCE_EXHAUSTED is the Google standard mapping (UNCONFIRMED).
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": {
            "code": 429,
            "message": format!("[{reason}] {message}"),
            "status": "RESOURCE_EXHAUSTED",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "merchantapi.googleapis.com"
            }]
        }})),
    )
        .into_response()
}

pub(super) fn unauthenticated(message: &str) -> Response {
    let mut r = gerr(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message);
    r.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
    );
    r
}

pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}
