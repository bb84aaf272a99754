//! Listings Items API 2021-08-01: `patchListingsItem`, `getListingsItem` and
//! `searchListingsItems` (model: `specs/amazon/listingsItems_2021-08-01.json`, from
//! <https://github.com/amzn/selling-partner-api-models>).

use super::*;

/// A problem with a submission, rendered as a listings `Issue` or a feed report issue.
#[derive(Debug, Clone)]
pub(super) struct Issue {
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) attribute: Option<String>,
    pub(super) category: Option<&'static str>,
}

impl Issue {
    pub(super) fn listing_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), json!(self.code));
        m.insert("message".into(), json!(self.message));
        m.insert("severity".into(), json!("ERROR"));
        if let Some(a) = &self.attribute {
            m.insert("attributeNames".into(), json!([a]));
        }
        m.insert(
            "categories".into(),
            json!(self.category.map(|c| vec![c]).unwrap_or_default()),
        );
        Value::Object(m)
    }

    pub(super) fn report_json(&self, message_id: Option<i64>, sku: Option<&str>) -> Value {
        let mut m = Map::new();
        if let Some(id) = message_id {
            m.insert("messageId".into(), json!(id));
        }
        if let Some(s) = sku.filter(|s| !s.is_empty()) {
            m.insert("sku".into(), json!(s));
        }
        m.insert("code".into(), json!(self.code));
        m.insert("severity".into(), json!("ERROR"));
        m.insert("message".into(), json!(self.message));
        if let Some(a) = &self.attribute {
            m.insert("attributeName".into(), json!(a));
        }
        Value::Object(m)
    }
}

// Issue codes are UNCONFIRMED except 90000900 (listings model sandbox) and 90220 (feed report
// example, "'[x]' is required but not supplied.").
pub(super) fn invalid_value(attr: &str, message: String) -> Issue {
    Issue {
        code: "90000900",
        message,
        attribute: Some(attr.to_string()),
        category: Some("INVALID_ATTRIBUTE"),
    }
}

pub(super) fn missing_value(attr: &str, field: &str) -> Issue {
    Issue {
        code: "90220",
        message: format!("'[{field}]' is required but not supplied."),
        attribute: Some(attr.to_string()),
        category: Some("MISSING_ATTRIBUTE"),
    }
}

pub(super) fn unknown_sku(sku: &str) -> Issue {
    Issue {
        code: "4000004",
        message: format!(
            "The SKU '{sku}' does not match any listing of this seller; a patch cannot create a listing."
        ),
        attribute: None,
        category: None,
    }
}

pub(super) fn rejected_sku(sku: &str) -> Issue {
    Issue {
        code: "8572",
        message: format!("You are not approved to list the SKU '{sku}' in this marketplace."),
        attribute: None,
        category: Some("QUALIFICATION_REQUIRED"),
    }
}

/// The JSON-schema part of a `PatchOperation` (listingsItems model / feed schema); violations
/// are 400 on the Listings API and message errors in a feed.
pub(super) fn check_patch_schema(p: &Value, i: usize) -> Result<(), String> {
    let Some(o) = p.as_object() else {
        return Err(format!("patches[{i}] must be an object."));
    };
    match o.get("op").and_then(Value::as_str) {
        Some("add" | "replace" | "merge" | "delete") => {}
        Some(other) => {
            return Err(format!(
                "patches[{i}].op '{other}' is not one of add, replace, merge, delete."
            ))
        }
        None => return Err(format!("patches[{i}].op is required.")),
    }
    if !o.get("path").is_some_and(Value::is_string) {
        return Err(format!(
            "patches[{i}].path is required and must be a string."
        ));
    }
    if let Some(v) = o.get("value") {
        match v.as_array() {
            Some(a) if a.iter().all(Value::is_object) => {}
            _ => return Err(format!("patches[{i}].value must be an array of objects.")),
        }
    }
    Ok(())
}

pub(super) fn check_patch_request(body: &Value) -> Result<Vec<Value>, String> {
    let Some(o) = body.as_object() else {
        return Err("The request body must be a ListingsItemPatchRequest object.".into());
    };
    if !o.get("productType").is_some_and(Value::is_string) {
        return Err("productType is required and must be a string.".into());
    }
    let Some(patches) = o.get("patches").and_then(Value::as_array) else {
        return Err("patches is required and must be an array.".into());
    };
    if patches.is_empty() {
        return Err("patches must contain at least 1 item.".into());
    }
    for (i, p) in patches.iter().enumerate() {
        check_patch_schema(p, i)?;
    }
    Ok(patches.clone())
}

pub(super) const FA: &str = "fulfillment_availability";

pub(super) fn non_negative_int(v: &Value) -> Option<i64> {
    v.as_i64().filter(|n| *n >= 0)
}

/// Applies schema-valid patches to `l`, returning the semantic issues: only
/// top-level `/attributes/…` paths, a non-empty `fulfillment_channel_code`, `quantity` an
/// integer ≥ 0; `merge` keeps unspecified fields, `replace`/`add` drop them.
pub(super) fn apply_patches(l: &mut Listing, patches: &[Value]) -> Vec<Issue> {
    let mut issues = Vec::new();
    for p in patches {
        let op = p.get("op").and_then(Value::as_str).unwrap_or("");
        let path = p.get("path").and_then(Value::as_str).unwrap_or("");
        let Some(attr) = path
            .strip_prefix("/attributes/")
            .filter(|a| !a.is_empty() && !a.contains('/'))
        else {
            issues.push(Issue {
                code: "4000001",
                message: format!(
                    "The path '{path}' is invalid: only top-level attributes ('/attributes/<name>') can be patched."
                ),
                attribute: None,
                category: Some("INVALID_ATTRIBUTE"),
            });
            continue;
        };
        let value = p.get("value").and_then(Value::as_array);
        if op == "delete" {
            if attr == FA {
                l.fa = None;
            } else {
                l.attrs.remove(attr);
            }
            continue;
        }
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            issues.push(missing_value(attr, attr));
            continue;
        };
        if attr != FA {
            l.attrs
                .insert(attr.to_string(), Value::Array(value.clone()));
            continue;
        }
        for entry in value {
            let code = entry
                .get("fulfillment_channel_code")
                .and_then(Value::as_str)
                .unwrap_or("");
            if code.is_empty() {
                issues.push(missing_value(FA, "fulfillment_channel_code"));
                continue;
            }
            if code != "DEFAULT" {
                // FBA quantities belong to Amazon; only the merchant channel is settable.
                issues.push(invalid_value(
                    FA,
                    format!("The value '{code}' for 'fulfillment_channel_code' is not valid for this merchant-fulfilled listing."),
                ));
                continue;
            }
            let qty = match entry.get("quantity") {
                None => None,
                Some(v) => match non_negative_int(v) {
                    Some(n) => Some(n),
                    None => {
                        issues.push(invalid_value(
                            FA,
                            format!("The value '{v}' for 'quantity' is invalid: it must be an integer greater than or equal to 0."),
                        ));
                        continue;
                    }
                },
            };
            let lead = match entry.get("lead_time_to_ship_max_days") {
                None => None,
                Some(v) => match non_negative_int(v) {
                    Some(n) => Some(n),
                    None => {
                        issues.push(invalid_value(
                            FA,
                            format!("The value '{v}' for 'lead_time_to_ship_max_days' is invalid."),
                        ));
                        continue;
                    }
                },
            };
            let restock = match entry.get("restock_date") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => {
                    issues.push(invalid_value(
                        FA,
                        format!("The value '{v}' for 'restock_date' is invalid."),
                    ));
                    continue;
                }
            };
            if op == "merge" {
                let cur = l.fa.clone().unwrap_or(Availability {
                    quantity: 0,
                    lead_time: None,
                    restock_date: None,
                });
                l.fa = Some(Availability {
                    quantity: qty.unwrap_or(cur.quantity),
                    lead_time: lead.or(cur.lead_time),
                    restock_date: restock.or(cur.restock_date),
                });
            } else {
                let Some(q) = qty else {
                    issues.push(missing_value(FA, "quantity"));
                    continue;
                };
                l.fa = Some(Availability {
                    quantity: q,
                    lead_time: lead,
                    restock_date: restock,
                });
            }
        }
    }
    issues
}

pub(super) fn included(q: &Query) -> Result<Vec<String>, String> {
    const ALLOWED: [&str; 8] = [
        "summaries",
        "attributes",
        "issues",
        "offers",
        "fulfillmentAvailability",
        "procurement",
        "relationships",
        "productTypes",
    ];
    let list = q
        .list("includedData")
        .unwrap_or_else(|| vec!["summaries".to_string()]);
    for d in &list {
        if !ALLOWED.contains(&d.as_str()) {
            return Err(format!("Invalid includedData value '{d}'."));
        }
    }
    Ok(list)
}

impl Amazon {
    pub(super) fn item_json(&self, l: &Listing, included: &[String]) -> Value {
        let mut m = Map::new();
        m.insert("sku".into(), json!(l.sku));
        let mp = &self.config.marketplace_id;
        for d in included {
            let v = match d.as_str() {
                "summaries" => {
                    let status = if l.quantity() > 0 {
                        json!(["BUYABLE", "DISCOVERABLE"])
                    } else {
                        json!(["DISCOVERABLE"])
                    };
                    json!([{
                        "marketplaceId": mp,
                        "asin": l.asin,
                        "productType": l.product_type,
                        "conditionType": "new_new",
                        "status": status,
                        "itemName": format!("Simulated item {}", l.sku),
                        "createdDate": ts(&l.created),
                        "lastUpdatedDate": ts(&l.updated),
                    }])
                }
                "attributes" => {
                    let mut a = l.attrs.clone();
                    if let Some(fa) = &l.fa {
                        let mut e = Map::new();
                        e.insert("fulfillment_channel_code".into(), json!("DEFAULT"));
                        e.insert("quantity".into(), json!(fa.quantity));
                        if let Some(d) = fa.lead_time {
                            e.insert("lead_time_to_ship_max_days".into(), json!(d));
                        }
                        if let Some(r) = &fa.restock_date {
                            e.insert("restock_date".into(), json!(r));
                        }
                        a.insert(FA.into(), json!([e]));
                    }
                    Value::Object(a)
                }
                "fulfillmentAvailability" => match &l.fa {
                    Some(fa) => {
                        json!([{"fulfillmentChannelCode": "DEFAULT", "quantity": fa.quantity}])
                    }
                    None => json!([]),
                },
                "relationships" => json!([{"marketplaceId": mp, "relationships": []}]),
                "productTypes" => json!([{"marketplaceId": mp, "productType": l.product_type}]),
                _ => json!([]),
            };
            m.insert(d.clone(), v);
        }
        Value::Object(m)
    }

    pub(super) fn schedule_listing(self: &Arc<Self>, sku: String, patches: Vec<Value>, seq: u64) {
        let sim = Arc::clone(self);
        let mut stop = self.core.shutdown_signal();
        let delay = self.config.listing_delay;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let mut st = lock(&sim.state);
            if let Some(l) = st.listings.get_mut(&sku) {
                // A later submission already applied wins (submissions apply in order).
                if l.applied_seq < seq {
                    apply_patches(l, &patches);
                    l.applied_seq = seq;
                    l.updated = sim.now();
                    Counters::add(&sim.core.counters.updates_applied, 1);
                }
            }
        });
    }
}

pub(super) async fn patch_listing(
    State(sim): State<Sim>,
    Path((seller, sku)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = "patchListingsItem";
    let r = patch_listing_inner(&sim, &seller, &sku, raw.as_deref(), &headers, &body).await;
    sim.finish(op, r)
}

pub(super) async fn patch_listing_inner(
    sim: &Sim,
    seller: &str,
    sku: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if let Err(r) = sim.gate("patchListingsItem", headers).await {
        return r;
    }
    if let Err(r) = sim.check_seller(seller) {
        return r;
    }
    let q = Query(parse_form_urlencoded(raw.unwrap_or("")));
    if let Err(r) = sim.check_marketplaces(&q) {
        return r;
    }
    let preview = match q.one("mode") {
        None => false,
        Some("VALIDATION_PREVIEW") => true,
        Some(m) => return bad_listing_request(&format!("Invalid mode '{m}'.")),
    };
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return bad_listing_request("The request body is not valid JSON."),
    };
    let patches = match check_patch_request(&parsed) {
        Ok(p) => p,
        Err(e) => return bad_listing_request(&e),
    };
    let submission = sim.core.uuid();
    let issues: Vec<Issue>;
    let seq;
    {
        let mut st = lock(&sim.state);
        issues = match st.listings.get(sku) {
            None => vec![unknown_sku(sku)],
            Some(_) if sim.core.rejects_sku(sku) => vec![rejected_sku(sku)],
            Some(l) => {
                let mut copy = l.clone();
                apply_patches(&mut copy, &patches)
            }
        };
        st.seq += 1;
        seq = st.seq;
    }
    let issues_json: Vec<Value> = issues.iter().map(Issue::listing_json).collect();
    let status = if !issues.is_empty() {
        "INVALID"
    } else if preview {
        "VALID"
    } else {
        sim.schedule_listing(sku.to_string(), patches, seq);
        "ACCEPTED"
    };
    let mut resp = json!({
        "sku": sku,
        "status": status,
        "submissionId": submission,
        "issues": issues_json,
    });
    if q.list("includedData")
        .is_some_and(|d| d.iter().any(|x| x == "identifiers"))
    {
        let asin = lock(&sim.state).listings.get(sku).map(|l| l.asin.clone());
        resp["identifiers"] = match asin {
            Some(a) => json!([{"marketplaceId": sim.config.marketplace_id, "asin": a}]),
            None => json!([]),
        };
    }
    json_response(StatusCode::OK, &resp)
}

pub(super) async fn get_listing(
    State(sim): State<Sim>,
    Path((seller, sku)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r = async {
        sim.gate("getListingsItem", &headers).await?;
        sim.check_seller(&seller)?;
        let q = Query(parse_form_urlencoded(raw.as_deref().unwrap_or("")));
        sim.check_marketplaces(&q)?;
        let inc = included(&q).map_err(|e| bad_listing_request(&e))?;
        let st = lock(&sim.state);
        match st.listings.get(&sku) {
            Some(l) => Ok(json_response(StatusCode::OK, &sim.item_json(l, &inc))),
            // 404 per; code and message UNCONFIRMED.
            None => Err(amz_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!(
                    "SKU '{sku}' not found in marketplace {}",
                    sim.config.marketplace_id
                ),
                "",
            )),
        }
    }
    .await;
    sim.finish("getListingsItem", r.unwrap_or_else(|e| e))
}

pub(super) async fn search_listings(
    State(sim): State<Sim>,
    Path(seller): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let r = async {
        sim.gate("searchListingsItems", &headers).await?;
        sim.check_seller(&seller)?;
        let q = Query(parse_form_urlencoded(raw.as_deref().unwrap_or("")));
        sim.check_marketplaces(&q)?;
        let inc = included(&q).map_err(|e| bad_listing_request(&e))?;
        let page_size = match q.one("pageSize") {
            None => 10,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=20).contains(&n) => n,
                _ => return Err(bad_listing_request("pageSize must be between 1 and 20.")),
            },
        };
        let offset = match q.one("pageToken") {
            None => 0,
            Some(t) => t
                .strip_prefix("sim-page-")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| bad_listing_request("Invalid pageToken."))?,
        };
        let identifiers = q.list("identifiers");
        let id_type = q.one("identifiersType");
        if identifiers.is_some() != id_type.is_some() {
            return Err(bad_listing_request(
                "identifiers and identifiersType must be provided together.",
            ));
        }
        let with_status = q.list("withStatus").unwrap_or_default();
        let without_status = q.list("withoutStatus").unwrap_or_default();
        let st = lock(&sim.state);
        let mut items: Vec<&Listing> = st
            .listings
            .values()
            .filter(|l| match (&identifiers, id_type) {
                (Some(ids), Some("SKU")) => ids.contains(&l.sku),
                (Some(ids), Some("ASIN")) => ids.contains(&l.asin),
                (Some(_), Some(_)) => false,
                _ => true,
            })
            .filter(|l| {
                let buyable = l.quantity() > 0;
                let has = |s: &String| s == "DISCOVERABLE" || (s == "BUYABLE" && buyable);
                with_status.iter().all(has) && !without_status.iter().any(has)
            })
            .collect();
        match q.one("sortBy").unwrap_or("lastUpdatedDate") {
            "sku" => items.sort_by(|a, b| a.sku.cmp(&b.sku)),
            "createdDate" => items.sort_by_key(|l| l.created),
            _ => items.sort_by_key(|l| l.updated),
        }
        if q.one("sortOrder").unwrap_or("DESC") == "DESC" {
            items.reverse();
        }
        let total = items.len();
        let page: Vec<Value> = items
            .iter()
            .skip(offset)
            .take(page_size)
            .map(|l| sim.item_json(l, &inc))
            .collect();
        let mut pagination = Map::new();
        if offset + page_size < total {
            pagination.insert(
                "nextToken".into(),
                json!(format!("sim-page-{}", offset + page_size)),
            );
        }
        if offset > 0 {
            pagination.insert(
                "previousToken".into(),
                json!(format!("sim-page-{}", offset.saturating_sub(page_size))),
            );
        }
        let mut resp = json!({"numberOfResults": total, "items": page});
        if !pagination.is_empty() {
            resp["pagination"] = Value::Object(pagination);
        }
        Ok(json_response(StatusCode::OK, &resp))
    }
    .await;
    sim.finish("searchListingsItems", r.unwrap_or_else(|e| e))
}
