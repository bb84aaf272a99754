//! Makes the OpenAPI document list every status the server can answer: the
//! statuses the framework layers produce for any route (bad bearer token,
//! wrong role, unreadable or too large or non-JSON body, bad query or path,
//! storage unavailable) are added to every operation they apply to, each
//! with the error body and its stable codes, and page sizes carry their
//! bounds. Handlers document only what is specific to them.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{Object, Schema, SchemaType, Type};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::Number;

pub struct ErrorResponses;

fn error_response(description: &str) -> Response {
    let mut response = Response::new(description);
    response.content.insert(
        "application/json".to_string(),
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    );
    response
}

/// Adds `status` with `description`, or appends the description to an
/// existing entry of that status.
fn add(operation: &mut Operation, status: &str, description: &str) {
    match operation.responses.responses.get_mut(status) {
        Some(RefOr::T(existing)) => {
            if !existing.description.contains(description) {
                existing.description = format!("{} Also: {description}", existing.description);
            }
            if existing.content.is_empty() {
                *existing = error_response(&existing.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            operation
                .responses
                .responses
                .insert(status.to_string(), RefOr::T(error_response(description)));
        }
    }
}

fn bound_integer(schema: &mut Option<RefOr<Schema>>, min: Number, max: Option<Number>) {
    if let Some(RefOr::T(Schema::Object(object))) = schema {
        object.minimum = Some(min);
        if let Some(max) = max {
            object.maximum = Some(max);
        }
    } else {
        let mut object = Object::with_type(SchemaType::Type(Type::Integer));
        object.minimum = Some(min);
        object.maximum = max;
        *schema = Some(RefOr::T(Schema::Object(object)));
    }
}

/// Identifiers (SKUs, ids, cursors) are 1–255 characters without control
/// characters: a free string parameter says so, unless it has its own pattern.
/// An empty query value means the parameter is absent (`allow_empty`).
fn identifier(schema: &mut Option<RefOr<Schema>>, allow_empty: bool) {
    if let Some(RefOr::T(Schema::Object(object))) = schema {
        let is_string = matches!(object.schema_type, SchemaType::Type(Type::String));
        if is_string && object.pattern.is_none() && object.enum_values.is_none() {
            object.max_length = Some(255);
            object.min_length = (!allow_empty).then_some(1);
            let repeat = if allow_empty { "*" } else { "+" };
            object.pattern = Some(format!("^{NO_CONTROL}{repeat}$"));
        }
    }
}

/// A character an identifier may hold (no C0/C1 control characters).
const NO_CONTROL: &str = "[^\\u0000-\\u001f\\u007f-\\u009f]";

fn set_pattern(schema: &mut Option<RefOr<Schema>>, pattern: String) {
    if let Some(RefOr::T(Schema::Object(object))) = schema {
        object.pattern = Some(pattern);
    }
}

fn clear_format(schema: &mut Option<RefOr<Schema>>) {
    if let Some(RefOr::T(Schema::Object(object))) = schema {
        object.format = None;
    }
}

fn complete(path: &str, operation: &mut Operation) {
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        add(
            operation,
            "401",
            "`unauthorized`: bearer token missing or unknown.",
        );
        add(
            operation,
            "403",
            "`forbidden`: the token's role is too low.",
        );
    }
    let mut has_query = false;
    let mut has_path = false;
    for parameter in operation.parameters.iter_mut().flatten() {
        match parameter.parameter_in {
            ParameterIn::Query => {
                has_query = true;
                match parameter.name.as_str() {
                    "limit" => bound_integer(
                        &mut parameter.schema,
                        Number::Int(1),
                        Some(Number::Int(1000)),
                    ),
                    // A sequence number: any u64.
                    "after_seq" => {
                        bound_integer(
                            &mut parameter.schema,
                            Number::Int(0),
                            Some(Number::UInt(usize::MAX)),
                        );
                        clear_format(&mut parameter.schema);
                    }
                    // The outbox cursor is `CHANNEL/SKU`; a channel filter
                    // must name one.
                    "after" if path == "/v1/outbox" => set_pattern(
                        &mut parameter.schema,
                        format!(
                            "^[^/\\u0000-\\u001f\\u007f-\\u009f]{{1,255}}/{NO_CONTROL}{{1,255}}$"
                        ),
                    ),
                    "channel" => identifier(&mut parameter.schema, false),
                    _ => identifier(&mut parameter.schema, true),
                }
            }
            ParameterIn::Path => {
                has_path = true;
                identifier(&mut parameter.schema, false);
            }
            _ => {}
        }
    }
    if has_query {
        add(
            operation,
            "400",
            "`invalid_query`: an unknown or malformed query parameter.",
        );
    }
    if has_path {
        add(
            operation,
            "400",
            "`invalid_path`: a path segment is not valid text.",
        );
    }
    if operation.request_body.is_some() {
        add(
            operation,
            "400",
            "`malformed_json` (not JSON, or an object naming one member twice) or `invalid_body`.",
        );
        add(operation, "413", "`payload_too_large`.");
        add(
            operation,
            "415",
            "`unsupported_media_type`: the body is not `application/json`.",
        );
    }
    add(
        operation,
        "503",
        "`storage_unavailable`: the database did not answer; nothing applied.",
    );
}

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                complete(path, operation);
            }
        }
    }
}
