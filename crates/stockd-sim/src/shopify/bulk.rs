//! Bulk query operations: `bulkOperationRunQuery(query:)`, the job's lifecycle
//! (`CREATED` → `RUNNING` → `COMPLETED` | `FAILED`, `EXPIRED` once its file's URL
//! expires), the JSONL result file served at a signed URL, and the operation read through
//! `currentBulkOperation(type:)` and `node(id:)` (`exec`).
//!
//! - The query is validated against the version's schema and the bulk rules: a `query`
//!   operation, at least one connection and at most five, nesting at most two levels, no
//!   top-level `node`/`nodes`, connections selected through `edges { node }`, a parent node
//!   of a nested connection selecting `id`, no connection inside a list; every refusal is a
//!   `BulkOperationUserError` with code `INVALID` and field `["query"]`
//!   (<https://shopify.dev/docs/api/usage/bulk-operations/queries>,
//!   <https://shopify.dev/docs/api/admin-graphql/latest/mutations/bulkOperationRunQuery>).
//!   The messages are Shopify's as observed by clients; Shopify does not publish them.
//! - One bulk query per app and shop at a time before 2026-01 (`OPERATION_IN_PROGRESS`,
//!   field `null`, "A bulk query operation for this app and shop is already in progress:
//!   {id}."); from 2026-01 five at a time (`LIMIT_REACHED`)
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/enums/BulkOperationUserErrorCode>,
//!   <https://shopify.dev/docs/api/admin-graphql/latest/queries/currentBulkOperation>).
//! - `bulkOperationCancel(id:)` turns a created or running operation `CANCELING`, then
//!   `CANCELED`; its slot is free once it is canceled
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/bulkOperationCancel>).
//! - The run costs a mutation (10 points) and polls cost what they select; the bulk
//!   execution itself is not charged (<https://shopify.dev/docs/api/usage/bulk-operations/queries>).
//! - The file: one JSON object per line; nested connections become lines of their own
//!   carrying `__parentId` (not selectable), nested plain objects stay inline; `first`,
//!   `after` and `pageInfo` are ignored. Before 2026-01 children follow their parent
//!   directly (grouped); from 2026-01 objects are not grouped and every child comes after
//!   all parents (<https://shopify.dev/changelog/bulk-operations-group-objects-default-changed-to-false>).
//!   The data is the shop as it stands when the job starts running. `url` is `null` when
//!   nothing matched; a failed job (`errorCode` `TIMEOUT`, `INTERNAL_SERVER_ERROR`,
//!   `ACCESS_DENIED`) offers what it read in `partialDataUrl`
//!   (<https://shopify.dev/docs/api/admin-graphql/latest/objects/BulkOperation>,
//!   <https://shopify.dev/docs/api/admin-graphql/latest/enums/bulkoperationerrorcode>).
//! - `objectCount`, `rootObjectCount` and `fileSize` are `UnsignedInt64`, sent as strings.
//! - The URL is a signed storage URL (Google Cloud Storage in Shopify's examples, with
//!   `GoogleAccessId`, `Expires`, `Signature`) valid for seven days by default; the download
//!   needs no Shopify token. A wrong signature answers 403 `SignatureDoesNotMatch`, an
//!   expired one 400 `ExpiredToken`, in the storage service's XML error shape
//!   (<https://cloud.google.com/storage/docs/xml-api/reference-status>).

use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock: the system clock, or a simulation's paused clock.
use tokio::time::Instant;

use apollo_compiler::schema::ExtendedType;
use apollo_compiler::validation::Valid;
use apollo_compiler::Schema;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::document::{self, Document, Field, OpKind, Selection};
use super::exec::{collect, obj_gid, Exec, Obj};
use super::schema::{operation_label, schema_for, validate_document};
use super::state::{now_iso, State};
use super::{Config, Shopify, V2026_01};
use crate::common::{ct_eq, hmac_sha256, lock, parse_form_urlencoded};

/// One bulk operation as the shop keeps it.
#[derive(Debug, Clone)]
pub(super) struct BulkOp {
    pub(super) id: u64,
    pub(super) query: String,
    pub(super) status: &'static str,
    pub(super) error_code: Option<&'static str>,
    pub(super) created_at: String,
    pub(super) completed_at: Option<String>,
    pub(super) object_count: u64,
    pub(super) root_object_count: u64,
    pub(super) file_size: Option<u64>,
    pub(super) url: Option<String>,
    pub(super) partial_data_url: Option<String>,
    /// When `url` / `partialDataUrl` stop working (the operation is then `EXPIRED`).
    pub(super) expires: Option<Instant>,
}

impl BulkOp {
    /// The status now: a finished operation whose file expired is `EXPIRED`.
    pub(super) fn status_now(&self) -> &'static str {
        match self.expires {
            Some(at) if Instant::now() >= at && matches!(self.status, "COMPLETED" | "FAILED") => {
                "EXPIRED"
            }
            _ => self.status,
        }
    }

    pub(super) fn running(&self) -> bool {
        matches!(self.status, "CREATED" | "RUNNING" | "CANCELING")
    }
}

/// A stored result file.
pub(super) struct BulkFile {
    pub(super) body: Arc<Vec<u8>>,
    pub(super) expires_unix: i64,
}

/// One `BulkOperationUserError`.
#[derive(Debug, Clone)]
pub(super) struct BulkUserErr {
    pub(super) code: &'static str,
    pub(super) field: Option<Vec<String>>,
    pub(super) message: String,
}

/// What `bulkOperationRunQuery` answers.
#[derive(Debug, Clone)]
pub(super) struct BulkOutcome {
    /// `bulkOperationCancel` rather than `bulkOperationRunQuery`.
    pub(super) cancel: bool,
    pub(super) op: Option<u64>,
    pub(super) errors: Vec<BulkUserErr>,
}

fn invalid(message: impl Into<String>) -> BulkUserErr {
    BulkUserErr {
        code: "INVALID",
        field: Some(vec!["query".into()]),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation of the bulk query

/// What the walk over a bulk query found.
#[derive(Default)]
struct Shape {
    connections: usize,
    depth: usize,
    via_nodes: Vec<String>,
    parents_without_id: Vec<String>,
    connection_in_list: bool,
}

fn kind_of<'s>(schema: &'s Schema, ty: &str, field: &str) -> Option<(&'s str, bool)> {
    let def = schema.type_field(ty, field).ok()?;
    let target = def.ty.inner_named_type().as_str();
    match schema.types.get(target)? {
        ExtendedType::Object(_) | ExtendedType::Interface(_) | ExtendedType::Union(_) => {
            Some((target, def.ty.is_list()))
        }
        _ => None,
    }
}

struct Walk<'a> {
    schema: &'a Schema,
    doc: &'a Document,
    shape: Shape,
}

impl<'a> Walk<'a> {
    fn fields(&self, ty: &str, sels: &'a [Selection]) -> Vec<&'a Field> {
        let mut out = Vec::new();
        collect(self.schema, self.doc, &Map::new(), ty, sels, &mut out);
        out
    }

    /// Whether `sels` on `ty` reach a connection through plain objects.
    fn has_connection(&self, ty: &str, sels: &'a [Selection]) -> bool {
        self.fields(ty, sels).into_iter().any(|f| {
            kind_of(self.schema, ty, &f.name).is_some_and(|(target, _)| {
                target.ends_with("Connection") || self.has_connection(target, &f.selection)
            })
        })
    }

    fn walk(&mut self, ty: &str, sels: &'a [Selection], depth: usize, in_list: bool) {
        for f in self.fields(ty, sels) {
            let Some((target, is_list)) = kind_of(self.schema, ty, &f.name) else {
                continue;
            };
            if !target.ends_with("Connection") {
                self.walk(target, &f.selection, depth, in_list || is_list);
                continue;
            }
            self.shape.connections += 1;
            self.shape.depth = self.shape.depth.max(depth + 1);
            self.shape.connection_in_list |= in_list;
            let parts = self.fields(target, &f.selection);
            let edges = parts.iter().find(|p| p.name == "edges");
            let Some(edges) = edges else {
                if parts.iter().any(|p| p.name == "nodes") {
                    self.shape.via_nodes.push(f.name.clone());
                }
                continue;
            };
            let Some((edge_ty, _)) = kind_of(self.schema, target, "edges") else {
                continue;
            };
            let Some((node_ty, _)) = kind_of(self.schema, edge_ty, "node") else {
                continue;
            };
            for node in self
                .fields(edge_ty, &edges.selection)
                .into_iter()
                .filter(|n| n.name == "node")
            {
                let selects_id = self
                    .fields(node_ty, &node.selection)
                    .iter()
                    .any(|n| n.name == "id" && n.alias.is_none());
                if !selects_id && self.has_connection(node_ty, &node.selection) {
                    self.shape.parents_without_id.push(f.name.clone());
                }
                self.walk(node_ty, &node.selection, depth + 1, false);
            }
        }
    }
}

/// The bulk query parsed and checked, or the user errors Shopify answers.
fn check_query(schema: &Valid<Schema>, query: &str) -> Result<Document, Vec<BulkUserErr>> {
    let doc = document::parse(query)
        .map_err(|e| vec![invalid(format!("Invalid bulk query: {}", e.message))])?;
    let Some(op) = doc.operations.first() else {
        return Err(vec![invalid(
            "Invalid bulk query: syntax error, unexpected end of file",
        )]);
    };
    if op.kind != OpKind::Query {
        return Err(vec![invalid(
            "Invalid operation type. Only `query` operations are supported.",
        )]);
    }
    schema_valid(schema, query, &doc, op.kind, op.name.as_deref())?;
    let mut errors = Vec::new();
    let mut walk = Walk {
        schema,
        doc: &doc,
        shape: Shape::default(),
    };
    let top = walk.fields("QueryRoot", &op.selection);
    for f in &top {
        if f.name == "node" || f.name == "nodes" {
            errors.push(invalid(format!(
                "Bulk queries cannot contain a top level `{}` field.",
                f.name
            )));
        }
    }
    walk.walk("QueryRoot", &op.selection, 0, false);
    let shape = walk.shape;
    if !shape.via_nodes.is_empty() {
        errors.push(invalid(format!(
            "All connection fields in a bulk query must select their contents using 'edges' > 'node', e.g: 'products {{ edges {{ node {{'. Selecting via 'nodes' is not supported. Invalid connection fields: {}.",
            quoted_list(&shape.via_nodes)
        )));
    }
    if shape.connection_in_list {
        errors.push(invalid(
            "Queries that contain a connection field within a list field are not currently supported.",
        ));
    }
    if shape.depth > 2 {
        errors.push(invalid(
            "Bulk queries cannot contain connections with a nesting depth greater than 2.",
        ));
    }
    if shape.connections > 5 {
        errors.push(invalid(
            "Bulk queries cannot contain more than 5 connections.",
        ));
    }
    if !shape.parents_without_id.is_empty() {
        errors.push(invalid(format!(
            "The parent 'node' field for a nested connection must select the 'id' field without an alias and must be of 'ID' return type. Connection fields without 'id': {}.",
            shape.parents_without_id.join(", ")
        )));
    }
    if shape.connections == 0 {
        errors.push(invalid(
            "Bulk queries must contain at least one connection.",
        ));
    }
    if top.len() > 1 {
        errors.push(invalid(
            "Bulk queries must contain a single top level field.",
        ));
    }
    if errors.is_empty() {
        Ok(doc)
    } else {
        Err(errors)
    }
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The schema's verdict on the bulk query, as user errors.
fn schema_valid(
    schema: &Valid<Schema>,
    query: &str,
    doc: &Document,
    kind: OpKind,
    name: Option<&str>,
) -> Result<(), Vec<BulkUserErr>> {
    let label = operation_label(kind, name);
    validate_document(schema, query, doc, &label).map_err(|errors| {
        errors
            .iter()
            .map(|e| {
                invalid(
                    e.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("Invalid bulk query")
                        .to_string(),
                )
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// Running a job

/// The result lines of a bulk query over the shop as it stands: `(is_root, line)`.
fn result_lines(
    schema: &Schema,
    st: &State,
    doc: &Document,
    grouped: bool,
    escape_slashes: bool,
) -> Vec<(bool, String)> {
    let Some(op) = doc.operations.first() else {
        return Vec::new();
    };
    let vars = Map::new();
    let mut ex = Exec {
        schema,
        st,
        vars: &vars,
        doc,
        actual: 0.0,
        errors: vec![],
        pending: Some(Vec::new()),
    };
    let _ = ex.render(&Obj::Query, &op.selection, &mut vec![]);
    let roots = ex.pending.replace(Vec::new()).unwrap_or_default();
    let mut now = Vec::new();
    let mut later = Vec::new();
    for (nodes, f) in roots {
        emit(&mut ex, &nodes, &f, None, grouped, &mut now, &mut later);
    }
    now.extend(later);
    if escape_slashes {
        for (_, line) in &mut now {
            *line = line.replace('/', "\\/");
        }
    }
    now
}

/// The selection of a connection's nodes (`edges { node { … } }`).
fn node_selection(f: &Field) -> Vec<Selection> {
    let mut out = Vec::new();
    for s in &f.selection {
        if let Selection::Field(edges) = s {
            if edges.name == "edges" {
                for e in &edges.selection {
                    if let Selection::Field(node) = e {
                        if node.name == "node" {
                            out.extend(node.selection.iter().cloned());
                        }
                    }
                }
            }
        }
    }
    out
}

fn emit(
    ex: &mut Exec<'_>,
    nodes: &[Obj],
    f: &Field,
    parent: Option<&str>,
    grouped: bool,
    now: &mut Vec<(bool, String)>,
    later: &mut Vec<(bool, String)>,
) {
    let sel = node_selection(f);
    for node in nodes {
        let value = ex.render(node, &sel, &mut vec![]);
        let nested = ex.pending.replace(Vec::new()).unwrap_or_default();
        let mut line = document::to_json_in_query_order(&value, &sel, ex.doc);
        if let Some(parent) = parent {
            line.pop();
            if !line.ends_with('{') {
                line.push(',');
            }
            line.push_str("\"__parentId\":");
            line.push_str(&Value::String(parent.to_string()).to_string());
            line.push('}');
        }
        now.push((parent.is_none(), line));
        let gid = obj_gid(node).unwrap_or_default();
        for (children, cf) in nested {
            if grouped {
                emit(ex, &children, &cf, Some(&gid), grouped, now, later);
            } else {
                let mut deeper = Vec::new();
                emit(ex, &children, &cf, Some(&gid), grouped, later, &mut deeper);
                later.extend(deeper);
            }
        }
    }
}

fn sign(key: &str, token: &str, expires: i64) -> String {
    hmac_sha256(key.as_bytes(), format!("{token}\n{expires}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a job needs from the simulator.
struct Job {
    state: Arc<Mutex<State>>,
    config: Config,
    base_url: String,
    id: u64,
    doc: Document,
    version: u32,
}

impl Job {
    /// Whether the operation was asked to cancel; if so it is now `CANCELED`.
    fn canceled(&self) -> bool {
        let mut st = lock(&self.state);
        match st.bulk_ops.iter_mut().find(|o| o.id == self.id) {
            Some(op) if op.status == "CANCELING" => {
                op.status = "CANCELED";
                op.completed_at = Some(now_iso());
                true
            }
            _ => false,
        }
    }

    fn set(&self, f: impl FnOnce(&mut BulkOp)) {
        let mut st = lock(&self.state);
        if let Some(op) = st.bulk_ops.iter_mut().find(|o| o.id == self.id) {
            f(op);
        }
    }

    /// Stores `lines` as a file and returns its signed URL.
    fn publish(&self, lines: &[(bool, String)]) -> (String, u64) {
        let mut body = Vec::new();
        for (_, line) in lines {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
        let size = body.len() as u64;
        let token = format!("{:x}-{}", self.id, lines.len());
        let token = format!(
            "{}{}",
            token,
            &sign(&self.config.access_token, &token, 0)[..16]
        );
        let expires_unix =
            chrono::Utc::now().timestamp() + self.config.bulk_url_ttl.as_secs() as i64;
        let signature = sign(&self.config.access_token, &token, expires_unix);
        lock(&self.state).bulk_files.insert(
            token.clone(),
            BulkFile {
                body: Arc::new(body),
                expires_unix,
            },
        );
        let url = format!(
            "{}/bulk-operation-outputs/{token}?GoogleAccessId=stockd-sim&Expires={expires_unix}&Signature={signature}",
            self.base_url
        );
        (url, size)
    }

    async fn run(self) {
        tokio::time::sleep(self.config.bulk_start_delay).await;
        if self.canceled() {
            return;
        }
        let lines = {
            let mut st = lock(&self.state);
            let schema = schema_for(self.version);
            let grouped = self.version < V2026_01;
            let lines = result_lines(
                schema,
                &st,
                &self.doc,
                grouped,
                self.config.bulk_escape_slashes,
            );
            if let Some(op) = st.bulk_ops.iter_mut().find(|o| o.id == self.id) {
                op.status = "RUNNING";
            }
            lines
        };
        let total = lines.len();
        let fail_at = match self.config.bulk_failure.as_deref() {
            Some("ACCESS_DENIED") => Some((0, "ACCESS_DENIED")),
            Some("TIMEOUT") => Some((total / 2, "TIMEOUT")),
            Some(_) => Some((total / 2, "INTERNAL_SERVER_ERROR")),
            None => None,
        };
        let rate = self.config.bulk_objects_per_sec.max(1.0);
        let start = Instant::now();
        loop {
            if self.canceled() {
                return;
            }
            let done = ((start.elapsed().as_secs_f64() * rate) as usize).min(total);
            let roots = lines[..done].iter().filter(|(root, _)| *root).count() as u64;
            if let Some((at, code)) = fail_at {
                if done >= at {
                    let partial = (at > 0).then(|| self.publish(&lines[..at]));
                    let ttl = self.config.bulk_url_ttl;
                    self.set(|op| {
                        op.status = "FAILED";
                        op.error_code = Some(code);
                        op.object_count = at as u64;
                        op.root_object_count =
                            lines[..at].iter().filter(|(root, _)| *root).count() as u64;
                        op.partial_data_url = partial.map(|(url, _)| url);
                        op.completed_at = Some(now_iso());
                        op.expires = Some(Instant::now() + ttl);
                    });
                    return;
                }
            }
            if done >= total {
                let file = (total > 0).then(|| self.publish(&lines));
                let ttl = self.config.bulk_url_ttl;
                self.set(|op| {
                    op.status = "COMPLETED";
                    op.object_count = total as u64;
                    op.root_object_count = roots;
                    op.file_size = file.as_ref().map(|(_, size)| *size);
                    op.url = file.map(|(url, _)| url);
                    op.completed_at = Some(now_iso());
                    op.expires = Some(Instant::now() + ttl);
                });
                return;
            }
            self.set(|op| {
                op.object_count = done as u64;
                op.root_object_count = roots;
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Shopify {
    /// `bulkOperationRunQuery(query:)`: validate, take a slot, start the job.
    pub(super) fn run_bulk_query(&self, query: &str, version: u32) -> BulkOutcome {
        let schema = schema_for(version);
        let doc = match check_query(schema, query) {
            Ok(doc) => doc,
            Err(errors) => {
                return BulkOutcome {
                    cancel: false,
                    op: None,
                    errors,
                }
            }
        };
        let mut st = lock(&self.state);
        let running: Vec<u64> = st
            .bulk_ops
            .iter()
            .filter(|o| o.running())
            .map(|o| o.id)
            .collect();
        let limit = if version >= V2026_01 { 5 } else { 1 };
        if running.len() >= limit {
            let error = if version >= V2026_01 {
                BulkUserErr {
                    code: "LIMIT_REACHED",
                    field: None,
                    message: "Bulk operations limit reached. Please try again later.".into(),
                }
            } else {
                BulkUserErr {
                    code: "OPERATION_IN_PROGRESS",
                    field: None,
                    message: format!(
                        "A bulk query operation for this app and shop is already in progress: gid://shopify/BulkOperation/{}.",
                        running[0]
                    ),
                }
            };
            return BulkOutcome {
                cancel: false,
                op: None,
                errors: vec![error],
            };
        }
        let id = st.next_bulk;
        st.next_bulk += 1;
        st.bulk_ops.push(BulkOp {
            id,
            query: query.to_string(),
            status: "CREATED",
            error_code: None,
            created_at: now_iso(),
            completed_at: None,
            object_count: 0,
            root_object_count: 0,
            file_size: None,
            url: None,
            partial_data_url: None,
            expires: None,
        });
        drop(st);
        let job = Job {
            state: self.state.clone(),
            config: self.config.clone(),
            base_url: self.base_url.clone(),
            id,
            doc,
            version,
        };
        tokio::spawn(job.run());
        BulkOutcome {
            cancel: false,
            op: Some(id),
            errors: Vec::new(),
        }
    }
}

impl Shopify {
    /// `bulkOperationCancel(id:)`: a created or running operation turns `CANCELING`, then
    /// `CANCELED` (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/bulkOperationCancel>).
    /// The refusal of a finished one is worded here; Shopify does not publish it.
    pub(super) fn cancel_bulk(&self, id: &str) -> BulkOutcome {
        let number = id
            .strip_prefix("gid://shopify/BulkOperation/")
            .and_then(|n| n.parse::<u64>().ok());
        let mut st = lock(&self.state);
        let Some(op) = number.and_then(|n| st.bulk_ops.iter_mut().find(|o| o.id == n)) else {
            return BulkOutcome {
                cancel: true,
                op: None,
                errors: vec![BulkUserErr {
                    code: "INVALID",
                    field: Some(vec!["id".into()]),
                    message: "Bulk operation does not exist".into(),
                }],
            };
        };
        let errors = if matches!(op.status, "CREATED" | "RUNNING") {
            op.status = "CANCELING";
            Vec::new()
        } else {
            vec![BulkUserErr {
                code: "INVALID",
                field: None,
                message: format!(
                    "A bulk operation cannot be canceled when it is {}",
                    op.status_now().to_lowercase()
                ),
            }]
        };
        BulkOutcome {
            cancel: true,
            op: Some(op.id),
            errors,
        }
    }
}

fn storage_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/xml; charset=UTF-8"),
    );
    r
}

/// `GET /bulk-operation-outputs/{token}?GoogleAccessId=…&Expires=…&Signature=…`: the file.
pub(super) async fn download(
    AxState(sim): AxState<Arc<Shopify>>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_form_urlencoded(query.as_deref().unwrap_or(""));
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let expires = param("Expires").and_then(|e| e.parse::<i64>().ok());
    let signature = param("Signature").unwrap_or_default();
    let st = lock(&sim.state);
    let Some(file) = st.bulk_files.get(&token) else {
        return storage_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    let expected = sign(&sim.config.access_token, &token, file.expires_unix);
    if expires != Some(file.expires_unix) || !ct_eq(expected.as_bytes(), signature.as_bytes()) {
        return storage_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    if chrono::Utc::now().timestamp() > file.expires_unix {
        return storage_error(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "The provided token has expired.",
        );
    }
    let body = file.body.as_ref().clone();
    drop(st);
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/jsonl"),
    );
    r
}
