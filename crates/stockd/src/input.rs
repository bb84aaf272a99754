//! Turning JSON values into validated core values: events, variants and
//! locations. Shared by the HTTP API and the import commands, so a file is
//! judged exactly as a request would be.
//!
//! Every input struct has optional fields and rejects unknown ones; when serde
//! refuses an object, each of its fields is decoded alone to find which ones
//! are wrong, so every problem is named with its field.

use crate::error::{ApiError, ErrorDetail, FieldProblem};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use stockd_core::catalog::gtin_is_valid;
use stockd_core::event::{LineInput, TEXT_LEN_MAX};
use stockd_core::rules::{
    ChangeBudgetDoc, EtaDoc, MatchDoc, PreallocationDoc, RuleError, RuleProblem, RuleValues,
    RulesDocument,
};
use stockd_core::{ChannelId, Event, EventInput, Location, LocationId, Sku, Variant};
use stockd_store::{ChannelKind, ChannelRecord, ListingRecord};
use utoipa::ToSchema;

/// Most events one request may carry.
pub const EVENTS_PER_REQUEST_MAX: usize = 10_000;
/// Most variants one bulk upsert may carry.
pub const VARIANTS_PER_REQUEST_MAX: usize = 10_000;

/// Body of `PUT /v1/variants/{sku}`: a variant without its SKU (it is in the path).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantFields {
    pub title: Option<String>,
    /// Product or group id tying the variants of one product together.
    pub product_id: Option<String>,
    /// GTIN/EAN: 8, 12, 13 or 14 digits with a valid check digit.
    pub gtin: Option<String>,
}

/// One item of `POST /v1/variants`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantItem {
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$"
    )]
    pub sku: Option<String>,
    pub title: Option<String>,
    pub product_id: Option<String>,
    pub gtin: Option<String>,
}

/// Body of `PUT /v1/locations/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationFields {
    /// 1–1,000 characters, not only spaces, no control characters.
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
    /// Whether stock here counts towards what channels may sell (default true).
    pub sellable: Option<bool>,
    /// Allocation order for orders without a location: lower first (default 0).
    pub priority: Option<i32>,
}

/// Decodes one JSON object into `T`, naming every field serde refuses.
fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, Vec<FieldProblem>> {
    match T::deserialize(value) {
        Ok(decoded) => Ok(decoded),
        Err(whole) => Err(match value {
            Value::Object(object) => {
                let mut problems = field_problems::<T>(object, "");
                if problems.is_empty() {
                    problems.push(FieldProblem {
                        field: None,
                        message: whole.to_string(),
                    });
                }
                problems
            }
            _ => vec![FieldProblem {
                field: None,
                message: format!("must be a JSON object, not {}", kind_of(value)),
            }],
        }),
    }
}

/// Decodes each field of `object` alone into `T` (all of whose fields are
/// optional) and reports those that fail, with `prefix` before their names.
fn field_problems<T: DeserializeOwned>(
    object: &Map<String, Value>,
    prefix: &str,
) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    for (name, field_value) in object {
        let mut alone = Map::new();
        alone.insert(name.clone(), field_value.clone());
        if let Err(e) = T::deserialize(&Value::Object(alone)) {
            problems.push(FieldProblem::new(format!("{prefix}{name}"), e.to_string()));
        }
    }
    problems
}

/// Like `field_problems`, but looks into order lines to name `lines[i].field`.
fn event_field_problems(object: &Map<String, Value>) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    for problem in field_problems::<EventInput>(object, "") {
        match (problem.field.as_deref(), object.get("lines")) {
            (Some("lines"), Some(Value::Array(lines))) => {
                for (i, line) in lines.iter().enumerate() {
                    match line {
                        Value::Object(line) => problems
                            .extend(field_problems::<LineInput>(line, &format!("lines[{i}]."))),
                        other => problems.push(FieldProblem::new(
                            format!("lines[{i}]"),
                            format!("must be a JSON object, not {}", kind_of(other)),
                        )),
                    }
                }
            }
            _ => problems.push(problem),
        }
    }
    problems
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses and validates one event.
pub fn parse_event(value: &Value) -> Result<Event, Vec<FieldProblem>> {
    let input: EventInput = match EventInput::deserialize(value) {
        Ok(input) => input,
        Err(whole) => {
            return Err(match value {
                Value::Object(object) => {
                    let mut problems = event_field_problems(object);
                    if problems.is_empty() {
                        problems.push(FieldProblem {
                            field: None,
                            message: whole.to_string(),
                        });
                    }
                    problems
                }
                other => vec![FieldProblem {
                    field: None,
                    message: format!("an event must be a JSON object, not {}", kind_of(other)),
                }],
            })
        }
    };
    Event::validate(&input).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| FieldProblem::new(e.field, e.message))
            .collect()
    })
}

/// The events of a `POST /v1/events` body: one object or an array of them.
/// Every problem of every event is reported; none is applied if any exists.
pub fn parse_events(body: Value) -> Result<Vec<Event>, ApiError> {
    let items = match body {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        other => {
            return Err(ApiError::invalid(
                "invalid_event",
                format!(
                    "the body must be an event object or an array of events, not {}",
                    kind_of(&other)
                ),
                Vec::new(),
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "invalid_event",
            "the array holds no events",
            Vec::new(),
        ));
    }
    if items.len() > EVENTS_PER_REQUEST_MAX {
        return Err(ApiError::invalid(
            "too_many_events",
            format!(
                "{} events in one request; at most {EVENTS_PER_REQUEST_MAX} are accepted",
                items.len()
            ),
            Vec::new(),
        ));
    }
    let mut events = Vec::with_capacity(items.len());
    let mut details = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match parse_event(item) {
            Ok(event) => events.push(event),
            Err(problems) => details.extend(problems.into_iter().map(|p| p.at(index))),
        }
    }
    if details.is_empty() {
        return Ok(events);
    }
    let invalid = details
        .iter()
        .filter_map(|d| d.index)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Err(ApiError::invalid(
        "invalid_event",
        format!(
            "{invalid} of {} events are invalid; nothing was applied",
            items.len()
        ),
        details,
    ))
}

fn check_text(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: &Option<String>,
    max_chars: usize,
) {
    if let Some(text) = value {
        if text.chars().count() > max_chars {
            problems.push(FieldProblem::new(
                field,
                format!("must be at most {max_chars} characters"),
            ));
        } else if text.chars().any(char::is_control) {
            problems.push(FieldProblem::new(
                field,
                "must not contain control characters",
            ));
        }
    }
}

/// Validates a variant's fields for the SKU `sku` (already parsed or not).
pub fn validate_variant(
    sku: Result<Sku, FieldProblem>,
    fields: VariantFields,
) -> Result<Variant, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let sku = match sku {
        Ok(sku) => Some(sku),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    check_text(&mut problems, "title", &fields.title, TEXT_LEN_MAX);
    check_text(
        &mut problems,
        "product_id",
        &fields.product_id,
        stockd_core::ids::ID_LEN_MAX,
    );
    if let Some(gtin) = &fields.gtin {
        if !gtin_is_valid(gtin) {
            problems.push(FieldProblem::new(
                "gtin",
                "must be 8, 12, 13 or 14 digits with a valid check digit",
            ));
        }
    }
    match sku {
        Some(sku) if problems.is_empty() => Ok(Variant {
            sku,
            title: fields.title,
            product_id: fields.product_id,
            gtin: fields.gtin,
        }),
        _ => Err(problems),
    }
}

/// Parses a SKU, as a problem of field `sku`.
pub fn parse_sku(raw: &str) -> Result<Sku, FieldProblem> {
    Sku::parse(raw).map_err(|e| FieldProblem::new("sku", e.to_string()))
}

/// The body of `PUT /v1/variants/{sku}`.
pub fn parse_variant(sku: &str, body: &Value) -> Result<Variant, ApiError> {
    let invalid = |problems: Vec<FieldProblem>| {
        let details: Vec<ErrorDetail> = problems.into_iter().map(|p| p.at(0)).collect();
        ApiError::invalid("invalid_variant", "the variant is invalid", details)
    };
    let fields: VariantFields = decode(body).map_err(invalid)?;
    validate_variant(parse_sku(sku), fields).map_err(invalid)
}

/// One item of a bulk variant upsert (also one row of an import file).
pub fn parse_variant_item(value: &Value) -> Result<Variant, Vec<FieldProblem>> {
    let item: VariantItem = decode(value)?;
    let sku = match &item.sku {
        Some(raw) => parse_sku(raw),
        None => Err(FieldProblem::new("sku", "is required")),
    };
    let fields = VariantFields {
        title: item.title,
        product_id: item.product_id,
        gtin: item.gtin,
    };
    validate_variant(sku, fields)
}

/// The body of `POST /v1/variants`: an array of variants, all valid and
/// with distinct SKUs, or none is applied.
pub fn parse_variant_items(body: Value) -> Result<Vec<Variant>, ApiError> {
    let Value::Array(items) = body else {
        return Err(ApiError::invalid(
            "invalid_variant",
            format!(
                "the body must be an array of variants, not {}",
                kind_of(&body)
            ),
            Vec::new(),
        ));
    };
    if items.len() > VARIANTS_PER_REQUEST_MAX {
        return Err(ApiError::invalid(
            "too_many_variants",
            format!(
                "{} variants in one request; at most {VARIANTS_PER_REQUEST_MAX} are accepted",
                items.len()
            ),
            Vec::new(),
        ));
    }
    parse_all(
        &items,
        parse_variant_item,
        |v| v.sku.clone(),
        "invalid_variant",
        "some variants are invalid; nothing was applied",
    )
}

/// The body of `PUT /v1/locations/{id}`.
pub fn parse_location(id: &str, body: &Value) -> Result<Location, ApiError> {
    let invalid = |problems: Vec<FieldProblem>| {
        let details: Vec<ErrorDetail> = problems.into_iter().map(|p| p.at(0)).collect();
        ApiError::invalid("invalid_location", "the location is invalid", details)
    };
    let fields: LocationFields = decode(body).map_err(invalid)?;
    let mut problems = Vec::new();
    let id = LocationId::parse(id)
        .map_err(|e| problems.push(FieldProblem::new("id", e.to_string())))
        .ok();
    match &fields.name {
        None => problems.push(FieldProblem::new("name", "is required")),
        Some(name) if name.trim().is_empty() => {
            problems.push(FieldProblem::new("name", "must not be empty"))
        }
        Some(_) => check_text(&mut problems, "name", &fields.name, TEXT_LEN_MAX),
    }
    match (id, fields.name) {
        (Some(id), Some(name)) if problems.is_empty() => Ok(Location {
            id,
            name,
            sellable: fields.sellable.unwrap_or(true),
            priority: fields.priority.unwrap_or(0),
        }),
        _ => Err(invalid(problems)),
    }
}

/// Most listings one request may carry.
pub const LISTINGS_PER_REQUEST_MAX: usize = 10_000;

/// Body of `PUT /v1/channels/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelFields {
    /// shopify, woocommerce, bol, amazon or gmc.
    #[schema(
        required = true,
        nullable = false,
        pattern = "^(shopify|woocommerce|bol|amazon|gmc)$"
    )]
    pub kind: Option<String>,
    /// Locations whose stock the channel sells (default: every sellable location).
    pub locations: Option<Vec<String>>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// The body of `PUT /v1/channels/{id}`, checked on its own (whether the
/// locations exist is the caller's check).
pub fn parse_channel(id: &str, body: &Value) -> Result<ChannelRecord, ApiError> {
    let invalid = |problems: Vec<FieldProblem>| {
        let details: Vec<ErrorDetail> = problems.into_iter().map(|p| p.at(0)).collect();
        ApiError::invalid("invalid_channel", "the channel is invalid", details)
    };
    let fields: ChannelFields = decode(body).map_err(invalid)?;
    let mut problems = Vec::new();
    let id = ChannelId::parse(id)
        .map_err(|e| problems.push(FieldProblem::new("id", e.to_string())))
        .ok();
    let kind = match fields.kind.as_deref() {
        None => {
            problems.push(FieldProblem::new("kind", "is required"));
            None
        }
        Some(raw) => ChannelKind::parse(raw).or_else(|| {
            problems.push(FieldProblem::new(
                "kind",
                format!("must be one of shopify, woocommerce, bol, amazon, gmc (got {raw:?})"),
            ));
            None
        }),
    };
    let locations = fields.locations.map(|raw| {
        raw.iter()
            .enumerate()
            .filter_map(|(i, l)| {
                LocationId::parse(l.as_str())
                    .map_err(|e| {
                        problems.push(FieldProblem::new(format!("locations[{i}]"), e.to_string()))
                    })
                    .ok()
            })
            .collect::<Vec<_>>()
    });
    match (id, kind) {
        (Some(id), Some(kind)) if problems.is_empty() => Ok(ChannelRecord {
            id,
            kind,
            locations,
            enabled: fields.enabled.unwrap_or(true),
        }),
        _ => Err(invalid(problems)),
    }
}

/// One item of `POST /v1/channels/{id}/listings` (also one row of an import file).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListingItem {
    pub sku: Option<String>,
    /// The channel's own ids for the variant (inventory item, offer id, …), kept as given.
    #[schema(value_type = Option<Object>)]
    pub external: Option<Map<String, Value>>,
    /// Pre-allocation priority (lower first).
    pub rank: Option<i32>,
}

/// One listing item for `channel`.
pub fn parse_listing_item(
    channel: &ChannelId,
    value: &Value,
) -> Result<ListingRecord, Vec<FieldProblem>> {
    let item: ListingItem = decode(value)?;
    let sku = match &item.sku {
        Some(raw) => parse_sku(raw).map_err(|p| vec![p])?,
        None => return Err(vec![FieldProblem::new("sku", "is required")]),
    };
    Ok(ListingRecord {
        channel: channel.clone(),
        sku,
        external: item.external.unwrap_or_default(),
        rank: item.rank,
    })
}

/// The body of `POST /v1/channels/{id}/listings`: an array of listings with
/// distinct SKUs, all valid or none applied.
pub fn parse_listing_items(
    channel: &ChannelId,
    body: Value,
) -> Result<Vec<ListingRecord>, ApiError> {
    let Value::Array(items) = body else {
        return Err(ApiError::invalid(
            "invalid_listing",
            format!(
                "the body must be an array of listings, not {}",
                kind_of(&body)
            ),
            Vec::new(),
        ));
    };
    if items.len() > LISTINGS_PER_REQUEST_MAX {
        return Err(ApiError::invalid(
            "too_many_listings",
            format!(
                "{} listings in one request; at most {LISTINGS_PER_REQUEST_MAX} are accepted",
                items.len()
            ),
            Vec::new(),
        ));
    }
    parse_all(
        &items,
        |item| parse_listing_item(channel, item),
        |l| l.sku.clone(),
        "invalid_listing",
        "some listings are invalid; nothing was applied",
    )
}

/// Parses every item of a bulk request, naming every problem by index —
/// a SKU that appears twice included — so the request applies whole or not at all.
fn parse_all<T>(
    items: &[Value],
    parse: impl Fn(&Value) -> Result<T, Vec<FieldProblem>>,
    sku_of: impl Fn(&T) -> Sku,
    code: &'static str,
    message: &'static str,
) -> Result<Vec<T>, ApiError> {
    let mut parsed = Vec::with_capacity(items.len());
    let mut details = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (index, item) in items.iter().enumerate() {
        match parse(item) {
            Ok(value) => {
                if let Some(first) = seen.insert(sku_of(&value), index) {
                    details.push(
                        FieldProblem::new("sku", format!("appears twice (first at index {first})"))
                            .at(index),
                    );
                }
                parsed.push(value);
            }
            Err(problems) => details.extend(problems.into_iter().map(|p| p.at(index))),
        }
    }
    if details.is_empty() {
        Ok(parsed)
    } else {
        Err(ApiError::invalid(code, message, details))
    }
}

/// A rules document from JSON. When serde refuses it, each part is decoded
/// alone so that every unknown key or wrong type is named by its path
/// (`defaults.colour`, `channels.bol.percent`, `overrides[1].set`).
pub fn parse_rules_document(value: &Value) -> Result<RulesDocument, Vec<RuleError>> {
    // serde would read a struct from an array too; the document is an object.
    if !value.is_object() {
        return Err(vec![unparsable("rules", "must be an object")]);
    }
    match RulesDocument::deserialize(value) {
        Ok(doc) => Ok(doc),
        Err(whole) => {
            let mut errors = Vec::new();
            locate_rules_problems(value, &mut errors);
            if errors.is_empty() {
                errors.push(unparsable("rules", whole.to_string()));
            }
            Err(errors)
        }
    }
}

fn unparsable(field: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError::new(
        field,
        RuleProblem::Unparsable {
            message: message.into(),
        },
    )
}

/// Decodes `value` as `T`; on failure names each field of an object that
/// fails alone (all fields of `T` are optional), or `path` itself.
fn locate<T: DeserializeOwned>(path: &str, value: &Value, out: &mut Vec<RuleError>) {
    let Err(whole) = T::deserialize(value) else {
        return;
    };
    let before = out.len();
    if let Value::Object(object) = value {
        for problem in field_problems::<T>(object, "") {
            let name = problem.field.unwrap_or_default();
            out.push(unparsable(format!("{path}.{name}"), problem.message));
        }
    }
    if out.len() == before {
        out.push(unparsable(path, whole.to_string()));
    }
}

fn locate_rules_problems(value: &Value, out: &mut Vec<RuleError>) {
    let Value::Object(top) = value else {
        out.push(unparsable(
            "rules",
            format!("must be an object, not {}", kind_of(value)),
        ));
        return;
    };
    for (key, part) in top {
        match key.as_str() {
            "defaults" => locate::<RuleValues>(key, part, out),
            "channels" => match part {
                Value::Object(channels) => {
                    for (id, values) in channels {
                        locate::<RuleValues>(&format!("channels.{id}"), values, out);
                    }
                }
                other => out.push(unparsable(
                    key.as_str(),
                    format!("must be an object, not {}", kind_of(other)),
                )),
            },
            "overrides" => match part {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let path = format!("overrides[{i}]");
                        match item {
                            Value::Object(fields) => {
                                for (name, field) in fields {
                                    let field_path = format!("{path}.{name}");
                                    match name.as_str() {
                                        "match" => locate::<MatchDoc>(&field_path, field, out),
                                        "set" => locate::<RuleValues>(&field_path, field, out),
                                        "channels" => {
                                            locate::<Option<Vec<String>>>(&field_path, field, out)
                                        }
                                        _ => out.push(unparsable(
                                            field_path,
                                            format!(
                                                "unknown field `{name}`, expected one of `match`, `channels`, `set`"
                                            ),
                                        )),
                                    }
                                }
                            }
                            other => out.push(unparsable(
                                path,
                                format!("must be an object, not {}", kind_of(other)),
                            )),
                        }
                    }
                }
                other => out.push(unparsable(
                    key.as_str(),
                    format!("must be an array, not {}", kind_of(other)),
                )),
            },
            "preallocation" => locate::<PreallocationDoc>(key, part, out),
            "eta" => locate::<EtaDoc>(key, part, out),
            "change_budget" => locate::<ChangeBudgetDoc>(key, part, out),
            _ => out.push(unparsable(
                key.as_str(),
                format!(
                    "unknown field `{key}`, expected one of `defaults`, `channels`, `overrides`, \
                     `preallocation`, `eta`, `change_budget`"
                ),
            )),
        }
    }
}

/// Rules problems as error details `{field, code, message}`.
pub fn rule_details(errors: &[RuleError]) -> Vec<ErrorDetail> {
    errors
        .iter()
        .map(|e| ErrorDetail {
            index: None,
            field: Some(e.field.clone()),
            key: None,
            code: Some(e.code().to_string()),
            message: e.problem.to_string(),
        })
        .collect()
}

/// 422 `invalid_rules` naming every problem.
pub fn invalid_rules(errors: &[RuleError]) -> ApiError {
    ApiError::invalid(
        "invalid_rules",
        format!(
            "the rules document has {} problem(s); nothing was changed",
            errors.len()
        ),
        rule_details(errors),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields_of(problems: &[FieldProblem]) -> Vec<&str> {
        problems
            .iter()
            .map(|p| p.field.as_deref().unwrap_or("-"))
            .collect()
    }

    fn check_event(value: Value, expect_fields: &[&str]) {
        match parse_event(&value) {
            Ok(_) => assert!(expect_fields.is_empty(), "{value} was accepted"),
            Err(problems) => assert_eq!(fields_of(&problems), expect_fields, "{problems:?}"),
        }
    }

    #[test]
    fn events_name_their_bad_fields() {
        check_event(
            json!({"key": "k", "type": "receipt", "sku": "A", "location": "L", "qty": 1}),
            &[],
        );
        check_event(
            json!({"key": "k", "type": "receipt", "sku": "A", "location": "L", "qty": 1, "colour": "red"}),
            &["colour"],
        );
        check_event(
            json!({"key": "k", "type": "receipt", "sku": "A", "location": "L", "qty": "ten"}),
            &["qty"],
        );
        check_event(
            json!({"key": "k", "type": "order", "order_id": "1",
                   "lines": [{"line_id": "1", "sku": "A", "qty": 1}, {"line_id": "2", "sku": "A", "qty": 1.5, "size": "M"}]}),
            &["lines[1].qty", "lines[1].size"],
        );
        check_event(
            json!({"key": "k", "type": "order", "order_id": "1", "lines": [7]}),
            &["lines[0]"],
        );
        check_event(
            json!({"key": "k", "type": "receipt", "qty": 0}),
            &["sku", "location", "qty"],
        );
        check_event(json!([1]), &["-"]);
    }

    #[test]
    fn unknown_field_message_names_it() {
        let problems =
            parse_event(&json!({"key": "k", "type": "receipt", "colour": 1})).unwrap_err();
        assert!(
            problems[0].message.contains("unknown field `colour`"),
            "{problems:?}"
        );
    }

    #[test]
    fn batches_report_every_invalid_event() {
        let err = parse_events(json!([
            {"key": "a", "type": "receipt", "sku": "A", "location": "L", "qty": 1},
            {"key": "b", "type": "receipt", "sku": "A", "location": "L"},
            {"key": "c", "type": "nope"}
        ]))
        .unwrap_err();
        assert_eq!(err.code(), "invalid_event");
        let ApiError::Invalid { details, .. } = err else {
            unreachable!()
        };
        let at: Vec<(usize, &str)> = details
            .iter()
            .map(|d| (d.index.unwrap(), d.field.as_deref().unwrap()))
            .collect();
        assert_eq!(at, [(1, "qty"), (2, "type")]);
    }

    #[test]
    fn batch_size_is_bounded() {
        let one = json!({"key": "a", "type": "receipt", "sku": "A", "location": "L", "qty": 1});
        let too_many = Value::Array(vec![one; EVENTS_PER_REQUEST_MAX + 1]);
        assert_eq!(
            parse_events(too_many).unwrap_err().code(),
            "too_many_events"
        );
        assert_eq!(parse_events(json!([])).unwrap_err().code(), "invalid_event");
        assert_eq!(
            parse_events(json!("x")).unwrap_err().code(),
            "invalid_event"
        );
    }

    #[test]
    fn variants_check_gtin_and_duplicates() {
        assert!(parse_variant("S", &json!({"gtin": "8712345678906"})).is_ok());
        let err = parse_variant("S", &json!({"gtin": "8712345678907"})).unwrap_err();
        assert_eq!(err.code(), "invalid_variant");
        let err = parse_variant("S", &json!({"sku": "S"})).unwrap_err();
        let ApiError::Invalid { details, .. } = err else {
            unreachable!()
        };
        assert_eq!(details[0].field.as_deref(), Some("sku"));
        let err =
            parse_variant_items(json!([{"sku": "A"}, {"sku": "B", "gtin": "1"}, {"sku": "A"}]))
                .unwrap_err();
        let ApiError::Invalid { details, .. } = err else {
            unreachable!()
        };
        let at: Vec<(usize, &str)> = details
            .iter()
            .map(|d| (d.index.unwrap(), d.field.as_deref().unwrap()))
            .collect();
        assert_eq!(at, [(1, "gtin"), (2, "sku")]);
    }

    #[test]
    fn locations_need_a_name() {
        let loc = parse_location("AMS", &json!({"name": "Amsterdam DC"})).unwrap();
        assert!(loc.sellable);
        assert_eq!(loc.priority, 0);
        assert_eq!(
            parse_location("AMS", &json!({"sellable": true}))
                .unwrap_err()
                .code(),
            "invalid_location"
        );
        assert!(parse_location("AMS", &json!({"name": "x", "priority": 1e10})).is_err());
    }
}
