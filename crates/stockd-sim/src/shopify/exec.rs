//! The executor: resolves a validated document's fields on the shop's state — reads through
//! `inventoryItems`, `inventoryItem`, `inventoryLevel`, `location(s)`, `productVariant(s)`,
//! `node` and `nodes`, connections with cursors and `pageInfo`, and the mutation payloads.
//! `__typename` answers the schema's type names (`InventoryItemConnection`, not `Connection`).
//! A field the schema has but the simulator does not emulate is a field error, never a
//! silent null.
//!
//! Sources: <https://shopify.dev/docs/api/admin-graphql/2024-07/objects/InventoryQuantity>,
//! <https://shopify.dev/docs/api/admin-graphql/2026-01/objects/InventoryLevel>,
//! <https://shopify.dev/docs/api/admin-graphql/latest/connections/InventoryLevelConnection.md>
//! (connections, cursors, `pageInfo`),
//! <https://shopify.dev/docs/api/admin-graphql/unstable/payloads/inventorysetquantitiespayload>.

use apollo_compiler::Schema;
use serde_json::{json, Map, Value};

use super::bulk::{BulkOutcome, BulkUserErr};
use super::document::{self, Document, Field, Selection};
use super::schema::{gql_error, literal_to_json};
use super::state::{
    gid, level_gid, parse_gid, parse_level_gid, Change, Group, Item, Outcome, State, UserErr,
};

#[derive(Debug, Clone)]
pub(super) enum Obj {
    Query,
    Item(u64),
    Level(u64, u64),
    Quantity {
        item: u64,
        loc: u64,
        name: String,
    },
    Location(u64),
    Variant(u64),
    Product(u64),
    Conn {
        /// The schema type of the nodes (`InventoryItem`): names the
        /// connection and edge types for `__typename`.
        node_type: &'static str,
        nodes: Vec<Obj>,
        has_next: bool,
        has_prev: bool,
    },
    Edge(Box<Obj>, &'static str),
    PageInfo {
        has_next: bool,
        has_prev: bool,
        start: Option<String>,
        end: Option<String>,
    },
    Payload(Outcome),
    Group(Group),
    Change(Change),
    UserError(UserErr, bool),
    BulkOp(u64),
    BulkPayload(BulkOutcome),
    BulkUserError(BulkUserErr),
    Order(u64),
    /// A line of an order, by the line's id.
    LineItem {
        order: u64,
        line: u64,
    },
    /// A refund of an order, by its place in the order's refunds.
    Refund {
        order: u64,
        index: usize,
    },
    /// A line of a refund, by its place in the order's lines.
    RefundLine {
        order: u64,
        refund: usize,
        index: usize,
    },
}

/// What a connection answers in a bulk query: its nodes go to lines of their own
/// (`bulk`), so the field is left out of its parent's line.
const BULK_CHILDREN: &str = "\u{0}bulk-children";

/// The global id of an object read through a connection (a bulk line's `__parentId`).
pub(super) fn obj_gid(o: &Obj) -> Option<String> {
    Some(match o {
        Obj::Item(i) => gid("InventoryItem", *i),
        Obj::Level(i, l) => level_gid(*i, *l),
        Obj::Location(l) => gid("Location", *l),
        Obj::Variant(v) => gid("ProductVariant", *v),
        Obj::Product(p) => gid("Product", *p),
        Obj::BulkOp(b) => gid("BulkOperation", *b),
        Obj::Order(o) => gid("Order", *o),
        _ => return None,
    })
}

fn typename(o: &Obj) -> &'static str {
    match o {
        Obj::Query => "QueryRoot",
        Obj::Item(_) => "InventoryItem",
        Obj::Level(..) => "InventoryLevel",
        Obj::Quantity { .. } => "InventoryQuantity",
        Obj::Location(_) => "Location",
        Obj::Variant(_) => "ProductVariant",
        Obj::Product(_) => "Product",
        Obj::Conn { node_type, .. } => connection_types(node_type).0,
        Obj::Edge(_, node_type) => connection_types(node_type).1,
        Obj::PageInfo { .. } => "PageInfo",
        Obj::Payload(o) if o.adjust => "InventoryAdjustQuantitiesPayload",
        Obj::Payload(_) => "InventorySetQuantitiesPayload",
        Obj::Group(_) => "InventoryAdjustmentGroup",
        Obj::Change(_) => "InventoryChange",
        Obj::UserError(_, true) => "InventoryAdjustQuantitiesUserError",
        Obj::UserError(_, false) => "InventorySetQuantitiesUserError",
        Obj::BulkOp(_) => "BulkOperation",
        Obj::BulkPayload(o) if o.cancel => "BulkOperationCancelPayload",
        Obj::BulkPayload(_) => "BulkOperationRunQueryPayload",
        Obj::BulkUserError(_) => "BulkOperationUserError",
        Obj::Order(_) => "Order",
        Obj::LineItem { .. } => "LineItem",
        Obj::Refund { .. } => "Refund",
        Obj::RefundLine { .. } => "RefundLineItem",
    }
}

/// The node types read through connections, with their connection and edge type names.
const CONNECTIONS: &[(&str, &str, &str)] = &[
    (
        "InventoryItem",
        "InventoryItemConnection",
        "InventoryItemEdge",
    ),
    (
        "InventoryLevel",
        "InventoryLevelConnection",
        "InventoryLevelEdge",
    ),
    ("Location", "LocationConnection", "LocationEdge"),
    (
        "ProductVariant",
        "ProductVariantConnection",
        "ProductVariantEdge",
    ),
    ("Order", "OrderConnection", "OrderEdge"),
    ("LineItem", "LineItemConnection", "LineItemEdge"),
    (
        "RefundLineItem",
        "RefundLineItemConnection",
        "RefundLineItemEdge",
    ),
];

/// The connection and edge type names of a node type, as the schema names
/// them (`InventoryItemConnection`, `InventoryItemEdge`).
fn connection_types(node_type: &str) -> (&'static str, &'static str) {
    CONNECTIONS
        .iter()
        .find(|(node, _, _)| *node == node_type)
        .map(|(_, conn, edge)| (*conn, *edge))
        .unwrap_or(("", ""))
}

fn cursor_for(o: &Obj) -> String {
    use base64::Engine as _;
    let id = obj_id(o);
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"last_id\":{id}}}"))
}

fn decode_cursor(c: &str) -> Option<u64> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(c).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v.get("last_id")?.as_u64()
}

fn obj_id(o: &Obj) -> u64 {
    match o {
        Obj::Item(i) | Obj::Location(i) | Obj::Variant(i) | Obj::Order(i) => *i,
        Obj::Level(_, l) => *l,
        Obj::LineItem { line, .. } => *line,
        Obj::RefundLine { index, .. } => *index as u64,
        _ => 0,
    }
}

#[path = "exec_orders.rs"]
mod orders;

pub(super) struct Exec<'a> {
    pub(super) schema: &'a Schema,
    pub(super) st: &'a State,
    pub(super) vars: &'a Map<String, Value>,
    pub(super) doc: &'a Document,
    /// The actual cost of what was resolved.
    pub(super) actual: f64,
    /// Field errors, with the path of each.
    pub(super) errors: Vec<Value>,
    /// In a bulk query: the connections met while rendering a node (their nodes and the
    /// connection field), rendered as lines of their own.
    pub(super) pending: Option<Vec<(Vec<Obj>, Field)>>,
}

fn included(vars: &Map<String, Value>, ds: &[document::Directive]) -> bool {
    for d in ds {
        let cond = d
            .args
            .iter()
            .find(|(n, _)| n == "if")
            .map(|(_, v)| literal_to_json(v, vars).as_bool().unwrap_or(false));
        match (d.name.as_str(), cond) {
            ("skip", Some(true)) | ("include", Some(false)) => return false,
            _ => {}
        }
    }
    true
}

/// Whether a fragment on `cond` applies to an object of concrete type `ty`: the same type, an
/// interface it implements or a union it belongs to.
fn applies(schema: &Schema, cond: &str, ty: &str) -> bool {
    cond == ty || schema.is_subtype(cond, ty)
}

/// Flatten fragments into the fields that apply to concrete type `ty`, honouring @skip/@include.
pub(super) fn collect<'f>(
    schema: &Schema,
    doc: &'f Document,
    vars: &Map<String, Value>,
    ty: &str,
    sels: &'f [Selection],
    out: &mut Vec<&'f Field>,
) {
    for s in sels {
        match s {
            Selection::Field(f) => {
                if included(vars, &f.directives) {
                    out.push(f);
                }
            }
            Selection::Spread {
                name, directives, ..
            } => {
                if let Some(fr) = doc.fragments.get(name) {
                    if included(vars, directives) && applies(schema, &fr.type_cond, ty) {
                        collect(schema, doc, vars, ty, &fr.selection, out);
                    }
                }
            }
            Selection::Inline {
                type_cond,
                directives,
                selection,
                ..
            } => {
                let applies = type_cond
                    .as_deref()
                    .is_none_or(|cond| applies(schema, cond, ty));
                if applies && included(vars, directives) {
                    collect(schema, doc, vars, ty, selection, out);
                }
            }
        }
    }
}

impl Exec<'_> {
    /// A field the schema has and the simulator does not answer: a field error, so a caller
    /// learns the simulator is the limit rather than reading a null Shopify would not send.
    fn not_emulated(&mut self, o: &Obj, f: &Field, path: &[String]) -> Value {
        self.errors.push(gql_error(
            format!(
                "Field '{}' on type '{}' is not emulated by the simulator",
                f.name,
                typename(o)
            ),
            Some(f.pos),
            path,
            json!({"code": "NOT_EMULATED"}),
        ));
        Value::Null
    }

    fn arg(&self, f: &Field, name: &str) -> Value {
        f.arg(name)
            .map(|v| literal_to_json(v, self.vars))
            .unwrap_or(Value::Null)
    }

    pub(super) fn render(&mut self, o: &Obj, sels: &[Selection], path: &mut Vec<String>) -> Value {
        let mut fields = Vec::new();
        let ty = typename(o);
        let doc = self.doc;
        collect(self.schema, doc, self.vars, ty, sels, &mut fields);
        let mut out = Map::new();
        for f in fields {
            path.push(f.key().to_string());
            let v = self.field(o, f, path);
            path.pop();
            if self.pending.is_some() && v.as_str() == Some(BULK_CHILDREN) {
                continue;
            }
            out.insert(f.key().to_string(), v);
        }
        Value::Object(out)
    }

    fn sub(&mut self, o: Option<Obj>, f: &Field, path: &mut Vec<String>) -> Value {
        match o {
            Some(o) => {
                self.actual += 1.0;
                self.render(&o, &f.selection, path)
            }
            None => Value::Null,
        }
    }

    fn item_exists(&self, id: u64) -> Option<Obj> {
        self.st.items.contains_key(&id).then_some(Obj::Item(id))
    }

    fn node_from_gid(&self, s: &str) -> Option<Obj> {
        if let Some((item, loc)) = parse_level_gid(s) {
            return self.level(item, loc);
        }
        let (kind, id, _) = parse_gid(s)?;
        match kind {
            "InventoryItem" => self.item_exists(id),
            "Location" => self
                .st
                .locations
                .iter()
                .any(|(l, _)| *l == id)
                .then_some(Obj::Location(id)),
            "ProductVariant" => self
                .st
                .items
                .values()
                .any(|i| i.variant_id == id)
                .then_some(Obj::Variant(id)),
            "Product" => self
                .st
                .items
                .values()
                .any(|i| i.product_id == id)
                .then_some(Obj::Product(id)),
            "Order" => self.st.orders.contains_key(&id).then_some(Obj::Order(id)),
            "BulkOperation" => self
                .st
                .bulk_ops
                .iter()
                .any(|b| b.id == id)
                .then_some(Obj::BulkOp(id)),
            _ => None,
        }
    }

    fn level(&self, item: u64, loc: u64) -> Option<Obj> {
        self.st
            .items
            .get(&item)?
            .levels
            .get(&loc)
            .map(|_| Obj::Level(item, loc))
    }

    fn item_of_variant(&self, vid: u64) -> Option<&Item> {
        self.st.items.values().find(|i| i.variant_id == vid)
    }

    fn connection(
        &mut self,
        node_type: &'static str,
        all: Vec<Obj>,
        f: &Field,
        path: &mut Vec<String>,
    ) -> Value {
        let first = self.arg(f, "first").as_i64();
        let last = self.arg(f, "last").as_i64();
        let mut list = all;
        if self.arg(f, "reverse").as_bool() == Some(true) {
            list.reverse();
        }
        if let Some(q) = self.arg(f, "query").as_str() {
            list = self.filter(list, q);
        }
        if let Some(pending) = self.pending.as_mut() {
            // A bulk query reads every node; `first`, `after` and `pageInfo` are ignored.
            self.actual += 2.0;
            pending.push((list, f.clone()));
            return json!(BULK_CHILDREN);
        }
        let total = list.len();
        let mut start = 0usize;
        let mut end = total;
        if let Some(a) = self.arg(f, "after").as_str().and_then(decode_cursor) {
            start = list
                .iter()
                .position(|o| obj_id(o) == a)
                .map(|p| p + 1)
                .unwrap_or(total);
        }
        if let Some(b) = self.arg(f, "before").as_str().and_then(decode_cursor) {
            end = list.iter().position(|o| obj_id(o) == b).unwrap_or(end);
        }
        let end = end.max(start);
        let (s, e) = match (first, last) {
            (Some(n), _) => (start, (start + n.max(0) as usize).min(end)),
            (None, Some(n)) => (end.saturating_sub(n.max(0) as usize).max(start), end),
            _ => (start, end),
        };
        let nodes: Vec<Obj> = list[s..e].to_vec();
        self.actual += 2.0;
        let conn = Obj::Conn {
            node_type,
            nodes,
            has_next: e < end || e < total,
            has_prev: s > 0,
        };
        self.render(&conn, &f.selection, path)
    }

    /// Shopify search syntax, the subset needed here: `sku:X`, `id:N`,
    /// `updated_at:>DATE` (also `>=`, `<`, `<=`), space = AND.
    fn filter(&self, list: Vec<Obj>, q: &str) -> Vec<Obj> {
        let terms: Vec<(String, String)> = q
            .split_whitespace()
            .filter_map(|t| t.split_once(':'))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.trim_matches(|c| c == '"' || c == '\'').to_string(),
                )
            })
            .collect();
        list.into_iter()
            .filter(|o| {
                terms.iter().all(|(k, v)| match (k.as_str(), o) {
                    ("sku", Obj::Item(i)) => self.st.items.get(i).is_some_and(|it| it.sku == *v),
                    ("sku", Obj::Variant(vid)) => {
                        self.item_of_variant(*vid).is_some_and(|it| it.sku == *v)
                    }
                    ("id", o) => v.parse::<u64>().ok() == Some(obj_id(o)),
                    ("updated_at", Obj::Order(id)) => self
                        .st
                        .orders
                        .get(id)
                        .is_some_and(|order| orders::date_matches(&order.updated_at, v)),
                    _ => true,
                })
            })
            .collect()
    }

    fn field(&mut self, o: &Obj, f: &Field, path: &mut Vec<String>) -> Value {
        if f.name == "__typename" {
            return json!(typename(o));
        }
        let st = self.st;
        match o {
            Obj::Query => match f.name.as_str() {
                "inventoryItems" => {
                    let all = st.items.keys().map(|i| Obj::Item(*i)).collect();
                    self.connection("InventoryItem", all, f, path)
                }
                "productVariants" => {
                    let all = st
                        .items
                        .values()
                        .map(|i| Obj::Variant(i.variant_id))
                        .collect();
                    self.connection("ProductVariant", all, f, path)
                }
                "locations" => {
                    let all = st
                        .locations
                        .iter()
                        .map(|(l, _)| Obj::Location(*l))
                        .collect();
                    self.connection("Location", all, f, path)
                }
                "inventoryItem" => {
                    let o = parse_gid(self.arg(f, "id").as_str().unwrap_or(""))
                        .filter(|(k, _, _)| *k == "InventoryItem")
                        .and_then(|(_, id, _)| self.item_exists(id));
                    self.sub(o, f, path)
                }
                "inventoryLevel" => {
                    let o = parse_level_gid(self.arg(f, "id").as_str().unwrap_or(""))
                        .and_then(|(i, l)| self.level(i, l));
                    self.sub(o, f, path)
                }
                "location" => {
                    let id = self.arg(f, "id");
                    let o = match id.as_str() {
                        None => Some(Obj::Location(st.primary())),
                        Some(s) => parse_gid(s).filter(|(k, _, _)| *k == "Location").and_then(
                            |(_, id, _)| {
                                st.locations
                                    .iter()
                                    .any(|(l, _)| *l == id)
                                    .then_some(Obj::Location(id))
                            },
                        ),
                    };
                    self.sub(o, f, path)
                }
                "productVariant" => {
                    let o = parse_gid(self.arg(f, "id").as_str().unwrap_or(""))
                        .filter(|(k, _, _)| *k == "ProductVariant")
                        .and_then(|(_, id, _)| self.item_of_variant(id).map(|_| Obj::Variant(id)));
                    self.sub(o, f, path)
                }
                "node" => {
                    let o = self.node_from_gid(self.arg(f, "id").as_str().unwrap_or(""));
                    self.sub(o, f, path)
                }
                "currentBulkOperation" => {
                    // Bulk mutations are not emulated: only queries are ever current.
                    let ty = self.arg(f, "type");
                    let o = match ty.as_str().unwrap_or("QUERY") {
                        "QUERY" => st.bulk_ops.last().map(|b| Obj::BulkOp(b.id)),
                        _ => None,
                    };
                    self.sub(o, f, path)
                }
                "orders" => self.orders(f, path),
                "order" => {
                    let o = parse_gid(self.arg(f, "id").as_str().unwrap_or(""))
                        .filter(|(k, _, _)| *k == "Order")
                        .and_then(|(_, id, _)| {
                            st.orders.contains_key(&id).then_some(Obj::Order(id))
                        });
                    self.sub(o, f, path)
                }
                "nodes" => {
                    let ids = self.arg(f, "ids");
                    let ids: Vec<String> = ids
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let mut out = Vec::new();
                    for (i, id) in ids.iter().enumerate() {
                        path.push(i.to_string());
                        let o = self.node_from_gid(id);
                        out.push(self.sub(o, f, path));
                        path.pop();
                    }
                    Value::Array(out)
                }
                _ => self.not_emulated(o, f, path),
            },
            Obj::Item(id) => {
                let Some(it) = st.items.get(id) else {
                    return Value::Null;
                };
                match f.name.as_str() {
                    "id" => json!(gid("InventoryItem", it.id)),
                    "sku" => json!(it.sku),
                    "tracked" | "requiresShipping" => json!(true),
                    "legacyResourceId" => json!(it.id.to_string()),
                    "createdAt" => json!(it.created_at),
                    "updatedAt" => json!(it.updated_at),
                    "duplicateSkuCount" => json!(st
                        .items
                        .values()
                        .filter(|o| o.sku == it.sku && o.id != it.id)
                        .count()),
                    "inventoryLevel" => {
                        let loc = parse_gid(self.arg(f, "locationId").as_str().unwrap_or(""))
                            .filter(|(k, _, _)| *k == "Location")
                            .map(|(_, l, _)| l);
                        let o = loc.and_then(|l| self.level(it.id, l));
                        self.sub(o, f, path)
                    }
                    "inventoryLevels" => {
                        let all = it.levels.keys().map(|l| Obj::Level(it.id, *l)).collect();
                        self.connection("InventoryLevel", all, f, path)
                    }
                    "variant" => self.sub(Some(Obj::Variant(it.variant_id)), f, path),
                    _ => self.not_emulated(o, f, path),
                }
            }
            Obj::Level(item, loc) => {
                let Some(lv) = st.items.get(item).and_then(|i| i.levels.get(loc)) else {
                    return Value::Null;
                };
                match f.name.as_str() {
                    "id" => json!(level_gid(*item, *loc)),
                    "createdAt" => json!(lv.created_at),
                    "updatedAt" => json!(lv.updated_at),
                    "canDeactivate" => json!(lv.q.on_hand() == 0),
                    "deactivationAlert" => Value::Null,
                    "available" => json!(lv.q.available),
                    "item" => self.sub(Some(Obj::Item(*item)), f, path),
                    "location" => self.sub(Some(Obj::Location(*loc)), f, path),
                    "quantities" => {
                        let names = self.arg(f, "names");
                        let names: Vec<String> = names
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let mut out = Vec::new();
                        for n in names {
                            if lv.q.get(&n).is_none() {
                                self.errors.push(gql_error(
                                    format!("The quantity name '{n}' is not valid."),
                                    Some(f.pos),
                                    path,
                                    Value::Null,
                                ));
                                continue;
                            }
                            let q = Obj::Quantity {
                                item: *item,
                                loc: *loc,
                                name: n,
                            };
                            self.actual += 1.0;
                            out.push(self.render(&q, &f.selection, path));
                        }
                        Value::Array(out)
                    }
                    _ => self.not_emulated(o, f, path),
                }
            }
            Obj::Quantity { item, loc, name } => {
                let Some(lv) = st.items.get(item).and_then(|i| i.levels.get(loc)) else {
                    return Value::Null;
                };
                match f.name.as_str() {
                    "id" => json!(format!("gid://shopify/InventoryQuantity/{loc}?inventory_item_id={item}&name={name}")),
                    "name" => json!(name),
                    "quantity" => json!(lv.q.get(name).unwrap_or(0)),
                    "updatedAt" => json!(lv.updated_at),
                    _ => self.not_emulated(o, f, path),
                }
            }
            Obj::Location(id) => match f.name.as_str() {
                "id" => json!(gid("Location", *id)),
                "name" => json!(st
                    .locations
                    .iter()
                    .find(|(l, _)| l == id)
                    .map(|(_, n)| n.clone())),
                "legacyResourceId" => json!(id.to_string()),
                "isActive" => json!(true),
                "inventoryLevel" => {
                    let item = parse_gid(self.arg(f, "inventoryItemId").as_str().unwrap_or(""))
                        .filter(|(k, _, _)| *k == "InventoryItem")
                        .map(|(_, i, _)| i);
                    let o = item.and_then(|i| self.level(i, *id));
                    self.sub(o, f, path)
                }
                _ => self.not_emulated(o, f, path),
            },
            Obj::Variant(vid) => {
                let Some(it) = self.item_of_variant(*vid) else {
                    return Value::Null;
                };
                match f.name.as_str() {
                    "id" => json!(gid("ProductVariant", *vid)),
                    "sku" => json!(it.sku),
                    "title" => json!("Default Title"),
                    "displayName" => json!(format!("{} - Default Title", it.sku)),
                    "legacyResourceId" => json!(vid.to_string()),
                    "inventoryQuantity" => {
                        json!(it.levels.values().map(|l| l.q.available).sum::<i64>())
                    }
                    "inventoryItem" => self.sub(Some(Obj::Item(it.id)), f, path),
                    "product" => self.sub(Some(Obj::Product(it.product_id)), f, path),
                    _ => self.not_emulated(o, f, path),
                }
            }
            Obj::Product(pid) => {
                let sku = st
                    .items
                    .values()
                    .find(|i| i.product_id == *pid)
                    .map(|i| i.sku.clone())
                    .unwrap_or_default();
                match f.name.as_str() {
                    "id" => json!(gid("Product", *pid)),
                    "title" => json!(format!("Product {sku}")),
                    "handle" => json!(format!("product-{}", sku.to_lowercase())),
                    "legacyResourceId" => json!(pid.to_string()),
                    _ => self.not_emulated(o, f, path),
                }
            }
            Obj::Order(_) | Obj::LineItem { .. } | Obj::Refund { .. } | Obj::RefundLine { .. } => {
                self.order_field(o, f, path)
            }
            Obj::Conn {
                node_type,
                nodes,
                has_next,
                has_prev,
            } => match f.name.as_str() {
                "nodes" => {
                    let mut out = Vec::new();
                    for n in nodes {
                        self.actual += 1.0;
                        out.push(self.render(n, &f.selection, path));
                    }
                    Value::Array(out)
                }
                "edges" => {
                    let mut out = Vec::new();
                    for n in nodes {
                        let edge = Obj::Edge(Box::new(n.clone()), node_type);
                        out.push(self.render(&edge, &f.selection, path));
                    }
                    Value::Array(out)
                }
                "pageInfo" => {
                    let pi = Obj::PageInfo {
                        has_next: *has_next,
                        has_prev: *has_prev,
                        start: nodes.first().map(cursor_for),
                        end: nodes.last().map(cursor_for),
                    };
                    self.render(&pi, &f.selection, path)
                }
                _ => self.not_emulated(o, f, path),
            },
            Obj::Edge(n, _) => match f.name.as_str() {
                "cursor" => json!(cursor_for(n)),
                "node" => {
                    self.actual += 1.0;
                    self.render(n, &f.selection, path)
                }
                _ => self.not_emulated(o, f, path),
            },
            Obj::PageInfo {
                has_next,
                has_prev,
                start,
                end,
            } => match f.name.as_str() {
                "hasNextPage" => json!(has_next),
                "hasPreviousPage" => json!(has_prev),
                "startCursor" => json!(start),
                "endCursor" => json!(end),
                _ => self.not_emulated(o, f, path),
            },
            Obj::Payload(out) => match f.name.as_str() {
                "inventoryAdjustmentGroup" => match &out.group {
                    Some(g) => self.render(&Obj::Group(g.clone()), &f.selection, path),
                    None => Value::Null,
                },
                "userErrors" => {
                    let mut v = Vec::new();
                    for e in &out.errors {
                        v.push(self.render(
                            &Obj::UserError(e.clone(), out.adjust),
                            &f.selection,
                            path,
                        ));
                    }
                    Value::Array(v)
                }
                _ => self.not_emulated(o, f, path),
            },
            Obj::Group(g) => match f.name.as_str() {
                "id" => json!(gid("InventoryAdjustmentGroup", g.id)),
                "createdAt" => json!(g.created_at),
                "reason" => json!(g.reason),
                "referenceDocumentUri" => json!(g.reference),
                "changes" => {
                    let items = self.arg(f, "inventoryItemIds");
                    let locs = self.arg(f, "locationIds");
                    let names = self.arg(f, "quantityNames");
                    let keep = |filter: &Value, v: String| {
                        filter
                            .as_array()
                            .is_none_or(|a| a.iter().any(|x| x.as_str() == Some(v.as_str())))
                    };
                    let mut v = Vec::new();
                    for c in &g.changes {
                        if keep(&items, gid("InventoryItem", c.item))
                            && keep(&locs, gid("Location", c.loc))
                            && keep(&names, c.name.clone())
                        {
                            v.push(self.render(&Obj::Change(c.clone()), &f.selection, path));
                        }
                    }
                    Value::Array(v)
                }
                _ => self.not_emulated(o, f, path),
            },
            Obj::Change(c) => match f.name.as_str() {
                "name" => json!(c.name),
                "delta" => json!(c.delta),
                "quantityAfterChange" => json!(c.after),
                "ledgerDocumentUri" => Value::Null,
                "item" => self.sub(Some(Obj::Item(c.item)), f, path),
                "location" => self.sub(Some(Obj::Location(c.loc)), f, path),
                _ => self.not_emulated(o, f, path),
            },
            Obj::UserError(e, _) => match f.name.as_str() {
                "code" => json!(e.code),
                "field" => json!(e.field),
                "message" => json!(e.message),
                _ => self.not_emulated(o, f, path),
            },
            Obj::BulkUserError(e) => match f.name.as_str() {
                "code" => json!(e.code),
                "field" => json!(e.field),
                "message" => json!(e.message),
                _ => self.not_emulated(o, f, path),
            },
            Obj::BulkPayload(out) => match f.name.as_str() {
                "bulkOperation" => {
                    let op = out.op.map(Obj::BulkOp);
                    self.sub(op, f, path)
                }
                "userErrors" => {
                    let mut v = Vec::new();
                    for e in &out.errors {
                        v.push(self.render(&Obj::BulkUserError(e.clone()), &f.selection, path));
                    }
                    Value::Array(v)
                }
                _ => self.not_emulated(o, f, path),
            },
            Obj::BulkOp(id) => {
                let Some(b) = st.bulk_ops.iter().find(|b| b.id == *id) else {
                    return Value::Null;
                };
                let expired = b.status_now() == "EXPIRED";
                match f.name.as_str() {
                    "id" => json!(gid("BulkOperation", b.id)),
                    "status" => json!(b.status_now()),
                    "errorCode" => json!(b.error_code),
                    "createdAt" => json!(b.created_at),
                    "completedAt" => json!(b.completed_at),
                    // UnsignedInt64 is serialised as a string.
                    "objectCount" => json!(b.object_count.to_string()),
                    "rootObjectCount" => json!(b.root_object_count.to_string()),
                    "fileSize" => json!(b.file_size.map(|n| n.to_string())),
                    "url" => json!(b.url.as_ref().filter(|_| !expired)),
                    "partialDataUrl" => json!(b.partial_data_url.as_ref().filter(|_| !expired)),
                    "query" => json!(b.query),
                    "type" => json!("QUERY"),
                    _ => self.not_emulated(o, f, path),
                }
            }
        }
    }
}
