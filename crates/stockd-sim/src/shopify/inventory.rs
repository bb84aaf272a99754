//! The inventory mutations: `inventorySetQuantities` (absolute values, compare-and-swap by
//! version) and `inventoryAdjustQuantities` (deltas, `ledgerDocumentUri` rules), all or nothing,
//! with `@idempotent(key:)` replays, the 250-item input limit and the ±1,000,000,000 bounds.
//!
//! Sources:
//! <https://shopify.dev/docs/api/admin-graphql/unstable/mutations/inventorySetQuantities>,
//! <https://shopify.dev/docs/api/admin-graphql/2025-04/input-objects/InventorySetQuantitiesInput>,
//! <https://shopify.dev/docs/api/admin-graphql/2026-01/enums/InventorySetQuantitiesUserErrorCode>,
//! <https://shopify.dev/changelog/compare-and-swap-redesign-for-inventory-set-quantities>,
//! <https://shopify.dev/changelog/making-changefromquantity-field-required.md>,
//! <https://shopify.dev/changelog/making-idempotency-mandatory-for-inventory-adjustments-and-refund-mutations>,
//! <https://shopify.dev/docs/api/usage/implementing-idempotency.md>,
//! <https://shopify.dev/docs/api/admin-graphql/2024-01/input-objects/InventoryAdjustQuantitiesInput>,
//! <https://shopify.dev/docs/api/admin-graphql/2024-07/input-objects/inventorychangeinput>,
//! <https://shopify.dev/api/usage/limits> (input arrays of at most 250 items).

use axum::response::Response;
use serde_json::{json, Map, Value};

use super::document::{Document, Field, Operation};
use super::exec::{collect, Exec, Obj};
use super::http::{cost_ext, respond_in_query_order};
use super::schema::{coerce, gql_error, literal_to_json};
use super::state::{
    now_iso, parse_gid, Change, Group, Idem, Level, Outcome, Quantities, State, UserErr,
};
use super::{Shopify, V2026_01, V2026_04, V2026_10};
use crate::common::{lock, Counters};

/// Reasons accepted. Shopify does not publish its list; this is Shopline's mirror plus
/// the internal ones Shopify documents for states.
const REASONS: &[&str] = &[
    "correction",
    "cycle_count_available",
    "damaged",
    "movement_created",
    "movement_updated",
    "movement_received",
    "movement_canceled",
    "other",
    "promotion",
    "quality_control",
    "received",
    "reservation_created",
    "reservation_deleted",
    "reservation_updated",
    "restock",
    "safety_stock",
    "shrinkage",
];

fn ue(code: &'static str, field: &[&str], message: impl Into<String>) -> UserErr {
    UserErr {
        code,
        field: Some(field.iter().map(|s| s.to_string()).collect()),
        message: message.into(),
    }
}

fn qfield(i: usize, name: &str) -> Vec<String> {
    vec![
        "input".into(),
        "quantities".into(),
        i.to_string(),
        name.into(),
    ]
}

impl Shopify {
    /// Validate everything first, then apply all or nothing. Whether one failing quantity
    /// fails the whole mutation is not documented; all-or-nothing is chosen here.
    fn set_quantities(
        &self,
        st: &mut State,
        input: &Map<String, Value>,
        version: u32,
    ) -> Result<(Outcome, Vec<(u64, u64)>), String> {
        let name = input.get("name").and_then(Value::as_str).unwrap_or("");
        let reason = input.get("reason").and_then(Value::as_str).unwrap_or("");
        let reference = input
            .get("referenceDocumentUri")
            .and_then(Value::as_str)
            .map(str::to_string);
        let ignore = input
            .get("ignoreCompareQuantity")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let empty = Vec::new();
        let qs = input
            .get("quantities")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        if version >= V2026_04 {
            // Shopify documents that omitting it is an error, not the error's shape.
            if let Some(i) = qs
                .iter()
                .position(|q| q.get("changeFromQuantity").is_none())
            {
                return Err(format!(
                    "Variable input.quantities.{i}.changeFromQuantity is required as of 2026-04. Pass null to opt out of the compare-and-swap check."
                ));
            }
        }
        let mut errors = Vec::new();
        if name != "available" && name != "on_hand" {
            errors.push(ue(
                "INVALID_NAME",
                &["input", "name"],
                "The quantity name must be either 'available' or 'on_hand'.",
            ));
        }
        if !REASONS.contains(&reason) {
            errors.push(ue(
                "INVALID_REASON",
                &["input", "reason"],
                "The specified reason is invalid.",
            ));
        }
        if let Some(r) = &reference {
            let scheme_ok = r.split_once(':').is_some_and(|(s, rest)| {
                !s.is_empty()
                    && !rest.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
            });
            if !scheme_ok {
                errors.push(ue(
                    "INVALID_REFERENCE_DOCUMENT",
                    &["input", "referenceDocumentUri"],
                    "The reference document URI must be a valid URI with a scheme.",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut plan: Vec<(u64, u64, i64)> = Vec::new();
        for (i, q) in qs.iter().enumerate() {
            let item_s = q
                .get("inventoryItemId")
                .and_then(Value::as_str)
                .unwrap_or("");
            let loc_s = q.get("locationId").and_then(Value::as_str).unwrap_or("");
            let quantity = q.get("quantity").and_then(Value::as_i64).unwrap_or(0);
            let item = parse_gid(item_s)
                .filter(|(k, _, _)| *k == "InventoryItem")
                .map(|(_, n, _)| n);
            let Some(item) = item.filter(|n| st.items.contains_key(n)) else {
                errors.push(UserErr {
                    code: "INVALID_INVENTORY_ITEM",
                    field: Some(qfield(i, "inventoryItemId")),
                    message: "The specified inventory item could not be found.".into(),
                });
                continue;
            };
            let loc = parse_gid(loc_s)
                .filter(|(k, _, _)| *k == "Location")
                .map(|(_, n, _)| n);
            let Some(loc) = loc.filter(|l| st.locations.iter().any(|(x, _)| x == l)) else {
                errors.push(UserErr {
                    code: "INVALID_LOCATION",
                    field: Some(qfield(i, "locationId")),
                    message: "The specified location could not be found.".into(),
                });
                continue;
            };
            if !seen.insert((item, loc)) {
                errors.push(UserErr {
                    code: "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                    field: Some(vec!["input".into(), "quantities".into(), i.to_string()]),
                    message: "The combination of inventoryItemId and locationId must be unique."
                        .into(),
                });
                continue;
            }
            let sku = st.items[&item].sku.clone();
            if self.core.rejects_sku(&sku) {
                // From 2026-10 ITEM_NOT_STOCKED_AT_LOCATION no longer exists, so an injected
                // permanent failure uses NON_MUTABLE_INVENTORY_ITEM instead.
                let (code, message) = if version >= V2026_10 {
                    (
                        "NON_MUTABLE_INVENTORY_ITEM",
                        "The specified inventory item is not allowed to be adjusted via API.",
                    )
                } else {
                    (
                        "ITEM_NOT_STOCKED_AT_LOCATION",
                        "The specified inventory item is not stocked at the location.",
                    )
                };
                errors.push(UserErr {
                    code,
                    field: Some(qfield(i, "locationId")),
                    message: message.into(),
                });
                continue;
            }
            let level = st.items[&item].levels.get(&loc).map(|l| l.q);
            let current = match level {
                Some(q) => q,
                None if version >= V2026_10 => Quantities::default(),
                None => {
                    errors.push(UserErr {
                        code: "ITEM_NOT_STOCKED_AT_LOCATION",
                        field: Some(qfield(i, "locationId")),
                        message: "The specified inventory item is not stocked at the location."
                            .into(),
                    });
                    continue;
                }
            };
            if quantity > 1_000_000_000 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_TOO_HIGH",
                    field: Some(qfield(i, "quantity")),
                    message: "The quantity can't be higher than 1,000,000,000.".into(),
                });
                continue;
            }
            if quantity < -1_000_000_000 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_TOO_LOW",
                    field: Some(qfield(i, "quantity")),
                    message: "The quantity can't be lower than -1,000,000,000.".into(),
                });
                continue;
            }
            if name == "on_hand" && quantity < 0 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_NEGATIVE",
                    field: Some(qfield(i, "quantity")),
                    message: "The quantity can't be negative.".into(),
                });
                continue;
            }
            let stored = current.get(name).unwrap_or(0);
            let new_on_hand = if name == "available" {
                current.on_hand() + quantity - current.available
            } else {
                quantity
            };
            if new_on_hand > 1_000_000_000 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_TOO_HIGH",
                    field: Some(qfield(i, "quantity")),
                    message: "The total quantity can't be higher than 1,000,000,000.".into(),
                });
                continue;
            }
            // Compare-and-swap by version.
            let cfq = q.get("changeFromQuantity");
            if version >= V2026_04 || (version >= V2026_01 && cfq.is_some()) {
                if let Some(expected) = cfq.and_then(Value::as_i64) {
                    if expected != stored {
                        errors.push(UserErr {
                            code: "CHANGE_FROM_QUANTITY_STALE",
                            field: Some(qfield(i, "changeFromQuantity")),
                            message: "The changeFromQuantity value does not match persisted value."
                                .into(),
                        });
                        continue;
                    }
                }
            } else if !ignore {
                match q.get("compareQuantity").and_then(Value::as_i64) {
                    None => {
                        errors.push(UserErr {
                            code: "COMPARE_QUANTITY_REQUIRED",
                            field: Some(qfield(i, "compareQuantity")),
                            message: "The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity.".into(),
                        });
                        continue;
                    }
                    Some(c) if c != stored => {
                        errors.push(UserErr {
                            code: "COMPARE_QUANTITY_STALE",
                            field: Some(qfield(i, "compareQuantity")),
                            message: "The compareQuantity value does not match persisted value."
                                .into(),
                        });
                        continue;
                    }
                    Some(_) => {}
                }
            }
            plan.push((item, loc, quantity));
        }
        if !errors.is_empty() {
            return Ok((
                Outcome {
                    adjust: false,
                    group: None,
                    errors,
                },
                vec![],
            ));
        }
        let now = now_iso();
        let mut changes = Vec::new();
        let mut touched = Vec::new();
        for (item, loc, quantity) in plan {
            let it = st.items.get_mut(&item).expect("validated");
            let lv = it.levels.entry(loc).or_insert_with(|| Level {
                q: Quantities::default(),
                created_at: now.clone(),
                updated_at: now.clone(),
            });
            let delta = if name == "available" {
                quantity - lv.q.available
            } else {
                quantity - lv.q.on_hand()
            };
            // Setting on_hand moves the difference through available (the only free bucket).
            lv.q.available += delta;
            lv.updated_at = now.clone();
            it.updated_at = now.clone();
            changes.push(Change {
                name: "available".into(),
                delta,
                after: lv.q.available,
                item,
                loc,
            });
            changes.push(Change {
                name: "on_hand".into(),
                delta,
                after: lv.q.on_hand(),
                item,
                loc,
            });
            touched.push((item, loc));
        }
        st.next_group += 1;
        let group = Group {
            id: st.next_group,
            created_at: now,
            reason: reason.to_string(),
            reference,
            changes,
        };
        Ok((
            Outcome {
                adjust: false,
                group: Some(group),
                errors: vec![],
            },
            touched,
        ))
    }
}

/// Names `inventoryAdjustQuantities` accepts (not published as a list: the quantity names
/// minus `committed`, which only orders move).
const ADJUSTABLE: &[&str] = &[
    "available",
    "damaged",
    "incoming",
    "on_hand",
    "quality_control",
    "reserved",
    "safety_stock",
];

impl Shopify {
    /// `inventoryAdjustQuantities`: deltas, `ledgerDocumentUri` rules, optional CAS by
    /// `changeFromQuantity` (required from 2026-04). Its error codes are not all documented;
    /// the set family's codes are reused where they fit. All or nothing, like the set mutation.
    fn adjust_quantities(
        &self,
        st: &mut State,
        input: &Map<String, Value>,
        version: u32,
    ) -> Result<(Outcome, Vec<(u64, u64)>), String> {
        let name = input.get("name").and_then(Value::as_str).unwrap_or("");
        let reason = input.get("reason").and_then(Value::as_str).unwrap_or("");
        let reference = input
            .get("referenceDocumentUri")
            .and_then(Value::as_str)
            .map(str::to_string);
        let empty = Vec::new();
        let cs = input
            .get("changes")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        if version >= V2026_04 {
            if let Some(i) = cs
                .iter()
                .position(|c| c.get("changeFromQuantity").is_none())
            {
                return Err(format!(
                    "Variable input.changes.{i}.changeFromQuantity is required as of 2026-04. Pass null to opt out of the compare-and-swap check."
                ));
            }
        }
        let cfield = |i: usize, n: &str| -> Vec<String> {
            vec!["input".into(), "changes".into(), i.to_string(), n.into()]
        };
        let mut errors = Vec::new();
        if !ADJUSTABLE.contains(&name) {
            errors.push(ue(
                "INVALID_QUANTITY_NAME",
                &["input", "name"],
                "The quantity name is not valid.",
            ));
        }
        if !REASONS.contains(&reason) {
            errors.push(ue(
                "INVALID_REASON",
                &["input", "reason"],
                "The specified reason is invalid.",
            ));
        }
        let mut plan: Vec<(u64, u64, i64)> = Vec::new();
        for (i, c) in cs.iter().enumerate() {
            let delta = c.get("delta").and_then(Value::as_i64).unwrap_or(0);
            let ledger = c.get("ledgerDocumentUri").and_then(Value::as_str);
            match (name == "available", ledger) {
                (true, Some(_)) => {
                    errors.push(UserErr {
                        code: "INVALID_AVAILABLE_DOCUMENT",
                        field: Some(cfield(i, "ledgerDocumentUri")),
                        message:
                            "A ledger document URI is not supported for the available quantity."
                                .into(),
                    });
                    continue;
                }
                (false, None) => {
                    errors.push(UserErr {
                        code: "INVALID_LEDGER_DOCUMENT",
                        field: Some(cfield(i, "ledgerDocumentUri")),
                        message: "A ledger document URI is required for this quantity name.".into(),
                    });
                    continue;
                }
                (false, Some(l)) if l.starts_with("gid://shopify/") => {
                    errors.push(UserErr {
                        code: "INTERNAL_LEDGER_DOCUMENT",
                        field: Some(cfield(i, "ledgerDocumentUri")),
                        message: "A Shopify GID is not accepted as a ledger document URI.".into(),
                    });
                    continue;
                }
                _ => {}
            }
            let item = c
                .get("inventoryItemId")
                .and_then(Value::as_str)
                .and_then(parse_gid)
                .filter(|(k, n, _)| *k == "InventoryItem" && st.items.contains_key(n))
                .map(|(_, n, _)| n);
            let Some(item) = item else {
                errors.push(UserErr {
                    code: "INVALID_INVENTORY_ITEM",
                    field: Some(cfield(i, "inventoryItemId")),
                    message: "The specified inventory item could not be found.".into(),
                });
                continue;
            };
            let loc = c
                .get("locationId")
                .and_then(Value::as_str)
                .and_then(parse_gid)
                .filter(|(k, n, _)| *k == "Location" && st.locations.iter().any(|(x, _)| x == n))
                .map(|(_, n, _)| n);
            let Some(loc) = loc else {
                errors.push(UserErr {
                    code: "INVALID_LOCATION",
                    field: Some(cfield(i, "locationId")),
                    message: "The specified location could not be found.".into(),
                });
                continue;
            };
            let sku = st.items[&item].sku.clone();
            let level = st.items[&item].levels.get(&loc).map(|l| l.q);
            let current = match level {
                Some(q) if !self.core.rejects_sku(&sku) => q,
                None if version >= V2026_10 && !self.core.rejects_sku(&sku) => {
                    Quantities::default()
                }
                _ => {
                    errors.push(UserErr {
                        code: "ITEM_NOT_STOCKED_AT_LOCATION",
                        field: Some(cfield(i, "locationId")),
                        message: "The specified inventory item is not stocked at the location."
                            .into(),
                    });
                    continue;
                }
            };
            let stored = current.get(name).unwrap_or(0);
            if let Some(expected) = c.get("changeFromQuantity").and_then(Value::as_i64) {
                if expected != stored {
                    errors.push(UserErr {
                        code: "CHANGE_FROM_QUANTITY_STALE",
                        field: Some(cfield(i, "changeFromQuantity")),
                        message: "The changeFromQuantity value does not match persisted value."
                            .into(),
                    });
                    continue;
                }
            }
            let after = stored + delta;
            if after > 1_000_000_000 || current.on_hand() + delta > 1_000_000_000 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_TOO_HIGH",
                    field: Some(cfield(i, "delta")),
                    message: "The quantity can't be higher than 1,000,000,000.".into(),
                });
                continue;
            }
            if after < -1_000_000_000 {
                errors.push(UserErr {
                    code: "INVALID_QUANTITY_TOO_LOW",
                    field: Some(cfield(i, "delta")),
                    message: "The quantity can't be lower than -1,000,000,000.".into(),
                });
                continue;
            }
            plan.push((item, loc, delta));
        }
        if !errors.is_empty() {
            return Ok((
                Outcome {
                    adjust: true,
                    group: None,
                    errors,
                },
                vec![],
            ));
        }
        let now = now_iso();
        let mut changes = Vec::new();
        let mut touched = Vec::new();
        for (item, loc, delta) in plan {
            let it = st.items.get_mut(&item).expect("validated");
            let lv = it.levels.entry(loc).or_insert_with(|| Level {
                q: Quantities::default(),
                created_at: now.clone(),
                updated_at: now.clone(),
            });
            let q = &mut lv.q;
            match name {
                "available" | "on_hand" => q.available += delta,
                "damaged" => q.damaged += delta,
                "incoming" => q.incoming += delta,
                "quality_control" => q.quality_control += delta,
                "reserved" => q.reserved += delta,
                _ => q.safety_stock += delta,
            }
            let q = lv.q;
            lv.updated_at = now.clone();
            it.updated_at = now.clone();
            let mut push = |n: &str, after: i64| {
                changes.push(Change {
                    name: n.into(),
                    delta,
                    after,
                    item,
                    loc,
                })
            };
            push(name, q.get(name).unwrap_or(0));
            if name == "on_hand" {
                push("available", q.available);
            } else if name != "incoming" {
                push("on_hand", q.on_hand());
            }
            touched.push((item, loc));
        }
        st.next_group += 1;
        let group = Group {
            id: st.next_group,
            created_at: now,
            reason: reason.to_string(),
            reference,
            changes,
        };
        Ok((
            Outcome {
                adjust: true,
                group: Some(group),
                errors: vec![],
            },
            touched,
        ))
    }
}

impl Shopify {
    pub(super) async fn run_mutation(
        &self,
        doc: &Document,
        op: &Operation,
        vars: &Map<String, Value>,
        version: u32,
        version_s: &str,
        requested: f64,
    ) -> Response {
        let schema = super::schema::schema_for(version);
        let mut fields = Vec::new();
        collect(schema, doc, vars, "Mutation", &op.selection, &mut fields);
        let fields: Vec<Field> = fields.into_iter().cloned().collect();
        let mut data = Map::new();
        let mut top_errors = Vec::new();
        let mut actual: f64 = 0.0;
        for f in &fields {
            let adjust = match f.name.as_str() {
                "__typename" => {
                    data.insert(f.key().into(), json!("Mutation"));
                    continue;
                }
                "inventorySetQuantities" => false,
                "inventoryAdjustQuantities" => true,
                "bulkOperationRunQuery" | "bulkOperationCancel" => {
                    actual += 10.0;
                    let arg = |name: &str| {
                        f.arg(name)
                            .map(|v| literal_to_json(v, vars))
                            .unwrap_or(Value::Null)
                    };
                    let outcome = if f.name == "bulkOperationCancel" {
                        self.cancel_bulk(arg("id").as_str().unwrap_or(""))
                    } else {
                        self.run_bulk_query(arg("query").as_str().unwrap_or(""), version)
                    };
                    let st = lock(&self.state);
                    let mut ex = Exec {
                        schema,
                        st: &st,
                        vars,
                        doc,
                        actual: 0.0,
                        errors: vec![],
                        pending: None,
                    };
                    let v = ex.render(
                        &Obj::BulkPayload(outcome),
                        &f.selection,
                        &mut vec![f.key().to_string()],
                    );
                    top_errors.extend(ex.errors);
                    data.insert(f.key().into(), v);
                    continue;
                }
                other => {
                    top_errors.push(gql_error(
                        format!(
                            "Field '{other}' on type 'Mutation' is not emulated by the simulator"
                        ),
                        Some(f.pos),
                        &[f.key().to_string()],
                        json!({"code": "NOT_EMULATED"}),
                    ));
                    data.insert(f.key().into(), Value::Null);
                    continue;
                }
            };
            actual += 10.0;
            let input_ty = if adjust {
                "InventoryAdjustQuantitiesInput!"
            } else {
                "InventorySetQuantitiesInput!"
            };
            let list_field = if adjust { "changes" } else { "quantities" };
            // Validated already: coercion only normalises (ids as strings, lists of one).
            let input_v = f
                .arg("input")
                .map(|v| literal_to_json(v, vars))
                .unwrap_or(Value::Null);
            let input = coerce(schema, &input_v, input_ty, &mut vec![], &mut Vec::new());
            let input = input.as_object().cloned().unwrap_or_default();
            let n_quantities = input
                .get(list_field)
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if n_quantities > 250 {
                // Array inputs take at most 250 items; the error text is not published.
                top_errors.push(gql_error(
                    format!("The input array size of {n_quantities} is greater than the maximum allowed of 250."),
                    Some(f.pos),
                    &[f.key().to_string(), "input".into(), list_field.into()],
                    json!({"code": "MAX_INPUT_SIZE_EXCEEDED"}),
                ));
                continue;
            }
            let key = f
                .directives
                .iter()
                .find(|d| d.name == "idempotent")
                .and_then(|d| d.args.iter().find(|(n, _)| n == "key"))
                .map(|(_, v)| literal_to_json(v, vars));
            let key = key.and_then(|k| k.as_str().map(str::to_string));
            if version >= V2026_04 && key.is_none() {
                // "Calling these mutations without an idempotency directive will result in an
                // error at runtime"; the message is not published.
                top_errors.push(gql_error(
                    "The @idempotent directive is required for this mutation.",
                    Some(f.pos),
                    &[f.key().to_string()],
                    json!({"code": "BAD_REQUEST"}),
                ));
                continue;
            }
            let fingerprint = format!(
                "{}:{}",
                f.name,
                serde_json::to_string(&input).unwrap_or_default()
            );
            let outcome = match self
                .apply_with_key(key, &fingerprint, &input, version, adjust)
                .await
            {
                Ok(o) => o,
                Err(msg) => {
                    top_errors.push(gql_error(
                        msg,
                        Some(f.pos),
                        &[f.key().to_string()],
                        json!({"code": "BAD_REQUEST"}),
                    ));
                    continue;
                }
            };
            let st = lock(&self.state);
            let mut ex = Exec {
                schema,
                st: &st,
                vars,
                doc,
                actual: 0.0,
                errors: vec![],
                pending: None,
            };
            let v = ex.render(
                &Obj::Payload(outcome),
                &f.selection,
                &mut vec![f.key().to_string()],
            );
            top_errors.extend(ex.errors);
            data.insert(f.key().into(), v);
        }
        let mut st = lock(&self.state);
        let actual = actual.min(requested);
        st.bucket.level = (st.bucket.level + (requested - actual)).min(st.bucket.max);
        let extensions = cost_ext(requested, Some(actual), &st.bucket);
        let data = (!data.is_empty() || top_errors.is_empty()).then_some(Value::Object(data));
        let errors = (!top_errors.is_empty()).then_some(Value::Array(top_errors));
        respond_in_query_order(
            data.as_ref(),
            errors,
            extensions,
            &op.selection,
            doc,
            version_s,
        )
    }

    async fn apply_with_key(
        &self,
        key: Option<String>,
        fingerprint: &str,
        input: &Map<String, Value>,
        version: u32,
        adjust: bool,
    ) -> Result<Outcome, String> {
        if let Some(k) = &key {
            let mut st = lock(&self.state);
            match st.idem.get(k) {
                Some(Idem::Done(fp, out)) if fp == fingerprint => return Ok(out.clone()),
                Some(Idem::Done(..)) | Some(Idem::InProgress) => {
                    let in_progress = matches!(st.idem.get(k), Some(Idem::InProgress));
                    let (code, message) = if in_progress {
                        (
                            "IDEMPOTENCY_CONCURRENT_REQUEST",
                            "This request is currently in progress, please try again.",
                        )
                    } else {
                        (
                            "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                            "The same idempotency key cannot be used with different operation parameters.",
                        )
                    };
                    return Ok(Outcome {
                        adjust,
                        group: None,
                        errors: vec![UserErr {
                            code,
                            field: None,
                            message: message.into(),
                        }],
                    });
                }
                None => {
                    st.idem.insert(k.clone(), Idem::InProgress);
                }
            }
        }
        if !self.config.mutation_processing_time.is_zero() {
            tokio::time::sleep(self.config.mutation_processing_time).await;
        }
        let mut st = lock(&self.state);
        let result = if adjust {
            self.adjust_quantities(&mut st, input, version)
        } else {
            self.set_quantities(&mut st, input, version)
        };
        match result {
            Err(msg) => {
                if let Some(k) = &key {
                    st.idem.remove(k);
                }
                Err(msg)
            }
            Ok((outcome, touched)) => {
                if let Some(k) = key {
                    st.idem
                        .insert(k, Idem::Done(fingerprint.to_string(), outcome.clone()));
                }
                Counters::add(&self.core.counters.updates_applied, touched.len() as u64);
                for (item, loc) in touched {
                    self.emit_level_update(&st, item, loc);
                }
                Ok(outcome)
            }
        }
    }
}
