//! The HTTP API's errors. Every error response is JSON of the shape
//! `{"error": {"code", "message", "details"?}}` with a stable, machine-readable
//! `code`; this includes axum's own rejections, which `json_errors` rewrites.
//! Storage failures are logged here and reach clients only as
//! `storage_unavailable`, without internals.

use crate::auth::Role;
use axum::extract::Request;
use axum::http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use stockd_core::EventError;
use stockd_store::StoreError;
use utoipa::ToSchema;

/// Most details one error response carries; the message says how many there were.
pub const DETAILS_MAX: usize = 1_000;

/// One problem of a request: which item (by index), which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Index of the item in the request's array (0 for a single object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The field, e.g. `qty` or `lines[1].sku`; absent when the item as a whole is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The idempotency key concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Stable code of this problem where one item can have several kinds
    /// (e.g. `percent_out_of_range` in a rules document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

/// A problem with one field of one item, before its index is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: Option<String>,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldProblem {
        FieldProblem {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn at(self, index: usize) -> ErrorDetail {
        ErrorDetail {
            index: Some(index),
            field: self.field,
            key: None,
            code: None,
            message: self.message,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorObject {
    /// Stable machine-readable code, e.g. `invalid_event`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
}

/// Everything the API can answer instead of a success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// A body that is valid JSON but not a valid request (`invalid_event`,
    /// `invalid_variant`, `invalid_location`, `too_many_events`, …).
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        details: Vec<ErrorDetail>,
    },
    #[error("idempotency key {key} was used before for a different event; nothing was applied")]
    KeyReused { index: usize, key: String },
    #[error("event {index} was refused: {error}; nothing was applied")]
    EventRefused { index: usize, error: EventError },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    #[error("invalid path parameter: {0}")]
    InvalidPath(String),
    #[error("the request body could not be read: {0}")]
    InvalidBody(String),
    #[error("the content type must be application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than this route accepts")]
    PayloadTooLarge,
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("this needs a token with the {} role", required.as_str())]
    Forbidden { required: Role },
    #[error("the storage is unavailable; retry later")]
    Storage(#[source] StoreError),
    /// Any other status produced below the handlers (axum, tower-http).
    #[error("{message}")]
    Http {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidPath(_)
            | ApiError::InvalidBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } | ApiError::EventRefused { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::KeyReused { .. } => StatusCode::CONFLICT,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Http { status, .. } => *status,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Invalid { code, .. } | ApiError::NotFound { code, .. } => code,
            ApiError::KeyReused { .. } => "idempotency_key_reused",
            ApiError::EventRefused { error, .. } => error.code(),
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidPath(_) => "invalid_path",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::Storage(_) => "storage_unavailable",
            ApiError::Http { code, .. } => code,
        }
    }

    /// The per-item details of the error (consumes it).
    pub fn into_details(self) -> Vec<ErrorDetail> {
        match self {
            ApiError::Invalid { details, .. } => details,
            ApiError::KeyReused { index, key } => vec![ErrorDetail {
                index: Some(index),
                field: Some("key".to_string()),
                key: Some(key),
                code: None,
                message: "this key was used before for a different payload".to_string(),
            }],
            ApiError::EventRefused { index, error } => vec![ErrorDetail {
                index: Some(index),
                field: Some(error.field().to_string()),
                key: None,
                code: None,
                message: error.to_string(),
            }],
            _ => Vec::new(),
        }
    }

    /// A request body that is valid JSON but not a valid request.
    pub fn invalid(
        code: &'static str,
        message: impl Into<String>,
        details: Vec<ErrorDetail>,
    ) -> Self {
        ApiError::Invalid {
            code,
            message: message.into(),
            details,
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::NotFound {
            code,
            message: message.into(),
        }
    }

    pub fn unknown_channel(channel: &str) -> Self {
        ApiError::not_found("unknown_channel", format!("unknown channel {channel:?}"))
    }

    pub fn unknown_sku(sku: &str) -> Self {
        ApiError::NotFound {
            code: "unknown_sku",
            message: format!("unknown sku {sku:?}"),
        }
    }

    /// The JSON error for a status that axum or a layer produced on its own.
    pub fn from_status(status: StatusCode) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal_error",
            _ => "request_failed",
        };
        ApiError::Http {
            status,
            code,
            message: status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_lowercase(),
        }
    }
}

impl From<ApiError> for ErrorObject {
    fn from(error: ApiError) -> ErrorObject {
        let code = error.code().to_string();
        let message = error.to_string();
        let mut details = error.into_details();
        let message = if details.len() > DETAILS_MAX {
            let total = details.len();
            details.truncate(DETAILS_MAX);
            format!("{message} (first {DETAILS_MAX} of {total} problems listed)")
        } else {
            message
        };
        ErrorObject {
            code,
            message,
            details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Storage(source) = &self {
            tracing::error!(error = %source, "storage failure");
        }
        let status = self.status();
        let unauthorized = matches!(self, ApiError::Unauthorized);
        let body = ErrorBody { error: self.into() };
        let mut response = (status, Json(body)).into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Router fallback: no route has this path.
pub async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "no such route".to_string(),
    }
}

/// The route exists but not with this method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::from_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// Rewrites any error response that is not JSON yet (axum's and tower-http's
/// own rejections) into the API's JSON error, keeping the headers that matter.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, _body) = response.into_parts();
    let mut rewritten = ApiError::from_status(status).into_response();
    for name in [ALLOW, WWW_AUTHENTICATE, RETRY_AFTER] {
        if let Some(value) = parts.headers.remove(&name) {
            rewritten.headers_mut().insert(name, value);
        }
    }
    rewritten
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
