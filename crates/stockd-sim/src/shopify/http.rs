//! The HTTP surface: `POST /admin/api/{version}/graphql.json` (the only API route besides
//! `/_sim`, next to the bulk operations' result files, `bulk`),
//! the version check, the access-token check, injected faults, the request pipeline (parse,
//! validate against the version's schema, coerce variables, price, throttle, execute) and the
//! responses — `data` in the order the query asked for, `extensions.cost` on every one.
//!
//! Sources: <https://www.shopify.dev/api/admin> (endpoint, `X-Shopify-Access-Token`),
//! <https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits> (calculated query cost,
//! the bucket must hold the requested cost, requested minus actual is refunded),
//! <https://shopify.dev/api/usage/rate-limits> (the `THROTTLED` error),
//! <https://spec.graphql.org/October2021/#sec-Serialization-Format> (response maps in query order).

use std::sync::Arc;

use axum::extract::{Path, Request, State as AxState};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};

use super::document::{self, Document, OpKind, Selection};
use super::exec::{Exec, Obj};
use super::schema::{
    coerce, gql_error, literal_to_json, operation_label, schema_for, validate_document, CostWalk,
    Problem,
};
use super::state::{Bucket, State};
use super::{parse_version, Shopify};
use crate::common::{lock, retry_after_value, sim_router, Counters, Injected, SimBackend};

/// The simulator's routes: the Admin GraphQL endpoint, the `/_sim` operator endpoints, and
/// Shopify's 404 body for anything else.
pub(super) fn router(sim: Arc<Shopify>, backend: Arc<dyn SimBackend>) -> Router {
    Router::new()
        .route("/admin/api/{version}/graphql.json", post(graphql_handler))
        .route(
            "/bulk-operation-outputs/{token}",
            axum::routing::get(super::bulk::download),
        )
        .with_state(sim)
        .merge(sim_router(backend))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"errors": "Not Found"})),
            )
        })
}

pub(super) fn cost_ext(requested: f64, actual: Option<f64>, bucket: &Bucket) -> Value {
    json!({"cost": {
        "requestedQueryCost": requested as i64,
        "actualQueryCost": actual.map(|a| a as i64),
        "throttleStatus": bucket.status(),
    }})
}

fn respond(status: StatusCode, body: Value, version: &str) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(version) {
        r.headers_mut().insert("x-shopify-api-version", v);
    }
    r
}

/// A result whose `data` keeps the order the query asked for (GraphQL spec,
/// "Serialization Format": a response map is ordered by the selection set).
pub(super) fn respond_in_query_order(
    data: Option<&Value>,
    errors: Option<Value>,
    extensions: Value,
    selection: &[Selection],
    doc: &Document,
    version: &str,
) -> Response {
    let mut body = String::from("{");
    if let Some(errors) = errors {
        body.push_str("\"errors\":");
        body.push_str(&errors.to_string());
        body.push(',');
    }
    if let Some(data) = data {
        body.push_str("\"data\":");
        body.push_str(&document::to_json_in_query_order(data, selection, doc));
        body.push(',');
    }
    body.push_str("\"extensions\":");
    body.push_str(&extensions.to_string());
    body.push('}');
    let mut r = (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(version) {
        r.headers_mut().insert("x-shopify-api-version", v);
    }
    r
}

fn errors_only(errors: Vec<Value>, st: &State, version: &str) -> Response {
    respond(
        StatusCode::OK,
        json!({"errors": errors, "extensions": cost_ext(0.0, Some(0.0), &st.bucket)}),
        version,
    )
}

async fn graphql_handler(
    AxState(sim): AxState<Arc<Shopify>>,
    Path(version_s): Path<String>,
    req: Request,
) -> Response {
    let injected = sim.core.intercept().await;
    let accepted = if sim.config.api_version == "any" {
        parse_version(&version_s).is_some()
    } else {
        sim.config
            .api_version
            .split(',')
            .any(|v| v.trim() == version_s)
    };
    let Some(version) = parse_version(&version_s).filter(|_| accepted) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"errors": "Not Found"})),
        )
            .into_response();
    };
    if let Some(inj) = injected {
        return injected_response(&sim, inj, &version_s);
    }
    let token_ok = req
        .headers()
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| crate::common::ct_eq(t.as_bytes(), sim.config.access_token.as_bytes()));
    if !token_ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})),
        )
            .into_response();
    }
    let body = match axum::body::to_bytes(req.into_body(), 8 << 20).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(json!({"errors": "Payload Too Large"})),
            )
                .into_response()
        }
    };
    sim.execute(&body, version, &version_s).await
}

fn injected_response(sim: &Shopify, inj: Injected, version: &str) -> Response {
    match inj {
        // Shopify does not document an outage's body; its REST-style error object is used.
        Injected::Outage => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"errors": "Service Unavailable"})),
        )
            .into_response(),
        Injected::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"errors": "Internal Server Error"})),
        )
            .into_response(),
        Injected::Throttle { retry_after } => {
            let st = lock(&sim.state);
            let status = StatusCode::from_u16(sim.config.throttle_status).unwrap_or(StatusCode::OK);
            let mut r = respond(status, throttled_body(0.0, &st.bucket, true), version);
            if let Some(s) = retry_after {
                if let Ok(v) = HeaderValue::from_str(&retry_after_value(s)) {
                    r.headers_mut().insert("retry-after", v);
                }
            }
            r
        }
    }
}

fn throttled_body(requested: f64, bucket: &Bucket, storm: bool) -> Value {
    let mut ext = cost_ext(requested, None, bucket);
    if storm {
        ext["cost"]["throttleStatus"]["currentlyAvailable"] = json!(0);
    }
    json!({
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
        "extensions": ext,
    })
}

impl Shopify {
    async fn execute(&self, body: &[u8], version: u32, version_s: &str) -> Response {
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    json!({"errors": {"query": "Required parameter missing or invalid"}}),
                    version_s,
                )
            }
        };
        let Some(query) = parsed.get("query").and_then(Value::as_str) else {
            return respond(
                StatusCode::BAD_REQUEST,
                json!({"errors": {"query": "Required parameter missing or invalid"}}),
                version_s,
            );
        };
        let raw_vars = match parsed.get("variables") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    json!({"errors": {"variables": "Required parameter missing or invalid"}}),
                    version_s,
                )
            }
        };
        let doc = match document::parse(query) {
            Ok(d) => d,
            Err(e) => {
                let st = lock(&self.state);
                return errors_only(
                    vec![gql_error(e.message, Some(e.pos), &[], Value::Null)],
                    &st,
                    version_s,
                );
            }
        };
        let op_name = parsed.get("operationName").and_then(Value::as_str);
        let op = match (op_name, doc.operations.len()) {
            (Some(n), _) => doc.operations.iter().find(|o| o.name.as_deref() == Some(n)),
            (None, 1) => doc.operations.first(),
            (None, _) => {
                let st = lock(&self.state);
                return errors_only(
                    vec![gql_error(
                        "An operation name is required",
                        None,
                        &[],
                        Value::Null,
                    )],
                    &st,
                    version_s,
                );
            }
        };
        let Some(op) = op.cloned() else {
            let st = lock(&self.state);
            return errors_only(
                vec![gql_error(
                    format!("No operation named \"{}\"", op_name.unwrap_or("")),
                    None,
                    &[],
                    Value::Null,
                )],
                &st,
                version_s,
            );
        };
        let root = match op.kind {
            OpKind::Query => "QueryRoot",
            OpKind::Mutation => "Mutation",
            OpKind::Subscription => {
                let st = lock(&self.state);
                return errors_only(
                    vec![gql_error(
                        "Schema is not configured for subscriptions",
                        Some(op.pos),
                        &[],
                        Value::Null,
                    )],
                    &st,
                    version_s,
                );
            }
        };
        let op_label = operation_label(op.kind, op.name.as_deref());
        // The document against the official schema of the requested version.
        let schema = schema_for(version);
        if let Err(errors) = validate_document(schema, query, &doc, &op_label) {
            let st = lock(&self.state);
            return errors_only(errors, &st, version_s);
        }
        // Variables: every value must coerce to its declared type (graphql-ruby's messages).
        let mut errors = Vec::new();
        let mut vars = Map::new();
        for vd in &op.vars {
            let given = raw_vars
                .get(&vd.name)
                .cloned()
                .or_else(|| vd.default.as_ref().map(|d| literal_to_json(d, &Map::new())));
            let Some(given) = given else {
                if vd.ty.ends_with('!') {
                    errors.push(gql_error(
                        format!("Variable ${} of type {} was provided invalid value", vd.name, vd.ty),
                        Some(op.pos),
                        &[],
                        json!({"value": null, "problems": [{"path": [], "explanation": "Expected value to not be null"}]}),
                    ));
                }
                continue;
            };
            let mut problems = Vec::new();
            let c = coerce(schema, &given, &vd.ty, &mut vec![], &mut problems);
            if problems.is_empty() {
                vars.insert(vd.name.clone(), c);
            } else {
                errors.push(invalid_variable(
                    &vd.name, &vd.ty, &given, &problems, op.pos,
                ));
            }
        }
        if !errors.is_empty() {
            let st = lock(&self.state);
            return errors_only(errors, &st, version_s);
        }
        let mut walk = CostWalk::new(schema, &doc, &vars);
        let requested = walk.selection(root, &op.selection, &mut vec![op_label.clone()]);
        if !walk.errors.is_empty() {
            let st = lock(&self.state);
            return errors_only(walk.errors, &st, version_s);
        }
        if requested > self.config.max_query_cost {
            let st = lock(&self.state);
            // Message and code as reported by clients; Shopify documents the limit only.
            return respond(
                StatusCode::OK,
                json!({
                    "errors": [{"message": format!("Query cost is {}, which exceeds the single query max cost limit ({}).", requested as i64, self.config.max_query_cost as i64),
                        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested as i64, "maxCost": self.config.max_query_cost as i64, "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                    "extensions": cost_ext(requested, None, &st.bucket),
                }),
                version_s,
            );
        }
        // The bucket must hold the requested cost before anything runs.
        {
            let mut st = lock(&self.state);
            st.bucket.refill();
            if st.bucket.level < requested {
                Counters::add(&self.core.counters.rate_limit_violations, 1);
                let status =
                    StatusCode::from_u16(self.config.throttle_status).unwrap_or(StatusCode::OK);
                return respond(
                    status,
                    throttled_body(requested, &st.bucket, false),
                    version_s,
                );
            }
            st.bucket.level -= requested;
        }
        if op.kind == OpKind::Mutation {
            return self
                .run_mutation(&doc, &op, &vars, version, version_s, requested)
                .await;
        }
        let mut st = lock(&self.state);
        let (data, actual, errs) = {
            let mut ex = Exec {
                schema,
                st: &st,
                vars: &vars,
                doc: &doc,
                actual: 0.0,
                errors: vec![],
                pending: None,
            };
            let data = ex.render(&Obj::Query, &op.selection, &mut vec![]);
            (data, ex.actual.min(requested), ex.errors)
        };
        // What was requested but not used is refunded.
        st.bucket.level = (st.bucket.level + (requested - actual)).min(st.bucket.max);
        let errors = (!errs.is_empty()).then_some(Value::Array(errs));
        let extensions = cost_ext(requested, Some(actual), &st.bucket);
        respond_in_query_order(
            Some(&data),
            errors,
            extensions,
            &op.selection,
            &doc,
            version_s,
        )
    }
}

/// A variable whose value does not coerce, as graphql-ruby reports it: each problem's path
/// inside the value and its explanation.
fn invalid_variable(
    name: &str,
    ty: &str,
    given: &Value,
    problems: &[Problem],
    pos: (usize, usize),
) -> Value {
    let detail: Vec<String> = problems
        .iter()
        .map(|p| {
            let path: Vec<String> = p
                .path
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect();
            if path.is_empty() {
                p.explanation.clone()
            } else {
                format!("{} ({})", path.join("."), p.explanation)
            }
        })
        .collect();
    gql_error(
        format!(
            "Variable ${name} of type {ty} was provided invalid value for {}",
            detail.join(", ")
        ),
        Some(pos),
        &[],
        json!({"value": given, "problems": problems.iter().map(|p| json!({"path": p.path, "explanation": p.explanation})).collect::<Vec<_>>()}),
    )
}
