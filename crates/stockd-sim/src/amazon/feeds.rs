//! Feeds API 2021-06-30 with `JSON_LISTINGS_FEED`: documents, feeds, their processing and the
//! v2 processing report (models and schemas in `specs/amazon/`, from
//! <https://github.com/amzn/selling-partner-api-models>).

use super::*;

pub(super) fn parse_body(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|_| invalid_input("The request body is not valid JSON."))
}

pub(super) async fn create_feed_document(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = "createFeedDocument";
    let r = async {
        sim.gate(op, &headers).await?;
        let v = parse_body(&body)?;
        let Some(ct) = v.get("contentType").and_then(Value::as_str) else {
            return Err(invalid_input("contentType is required."));
        };
        let id = format!("amzn1.tortuga.4.eu.{}", sim.core.uuid());
        lock(&sim.state).docs.insert(
            id.clone(),
            Document {
                content_type: ct.to_string(),
                body: None,
            },
        );
        // The pre-signed upload URL points back at this simulator (upload details UNCONFIRMED).
        let url = format!("{}/s3/feed-documents/{id}", sim.base_url);
        Ok(json_response(
            StatusCode::CREATED,
            &json!({"feedDocumentId": id, "url": url}),
        ))
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

/// The pre-signed S3 URL: no access token, not an SP-API call.
pub(super) async fn upload_document(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mut st = lock(&sim.state);
    match st.docs.get_mut(&id) {
        Some(d) => {
            d.body = Some(body.to_vec());
            StatusCode::OK.into_response()
        }
        None => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
    }
}

pub(super) async fn download_document(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let st = lock(&sim.state);
    match st.docs.get(&id) {
        Some(Document {
            content_type,
            body: Some(b),
        }) => {
            let mut r = (StatusCode::OK, b.clone()).into_response();
            if let Ok(v) = HeaderValue::from_str(content_type) {
                r.headers_mut().insert("content-type", v);
            }
            r
        }
        _ => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
    }
}

pub(super) async fn get_feed_document(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let op = "getFeedDocument";
    let r = async {
        sim.gate(op, &headers).await?;
        if !lock(&sim.state).docs.contains_key(&id) {
            return Err(amz_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The requested feed document was not found.",
                "",
            ));
        }
        let url = format!("{}/s3/feed-documents/{id}", sim.base_url);
        Ok(json_response(
            StatusCode::OK,
            &json!({"feedDocumentId": id, "url": url}),
        ))
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

pub(super) async fn create_feed(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = "createFeed";
    let r = async {
        sim.gate(op, &headers).await?;
        let v = parse_body(&body)?;
        let Some(feed_type) = v.get("feedType").and_then(Value::as_str) else {
            return Err(invalid_input("feedType is required."));
        };
        let mps = match v.get("marketplaceIds").and_then(Value::as_array) {
            Some(a) if !a.is_empty() && a.iter().all(Value::is_string) => a.clone(),
            _ => return Err(invalid_input("marketplaceIds is required.")),
        };
        let Some(doc) = v.get("inputFeedDocumentId").and_then(Value::as_str) else {
            return Err(invalid_input("inputFeedDocumentId is required."));
        };
        let id = {
            let mut st = lock(&sim.state);
            if !st.docs.contains_key(doc) {
                return Err(invalid_input("inputFeedDocumentId does not exist."));
            }
            st.next_feed += 1;
            let id = format!("{}", 50_001_019_000u64 + st.next_feed);
            st.feeds.insert(
                id.clone(),
                Feed {
                    id: id.clone(),
                    feed_type: feed_type.to_string(),
                    marketplace_ids: mps,
                    input_doc: doc.to_string(),
                    created: sim.now(),
                    started: None,
                    ended: None,
                    status: FeedStatus::InQueue,
                    result_doc: None,
                },
            );
            id
        };
        sim.schedule_feed(id.clone());
        Ok(json_response(StatusCode::ACCEPTED, &json!({"feedId": id})))
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

pub(super) fn feed_json(f: &Feed) -> Value {
    let mut m = Map::new();
    m.insert("feedId".into(), json!(f.id));
    m.insert("feedType".into(), json!(f.feed_type));
    m.insert(
        "marketplaceIds".into(),
        Value::Array(f.marketplace_ids.clone()),
    );
    m.insert("createdTime".into(), json!(ts(&f.created)));
    m.insert("processingStatus".into(), json!(f.status.as_str()));
    if let Some(t) = &f.started {
        m.insert("processingStartTime".into(), json!(ts(t)));
    }
    if let Some(t) = &f.ended {
        m.insert("processingEndTime".into(), json!(ts(t)));
    }
    if let Some(d) = &f.result_doc {
        m.insert("resultFeedDocumentId".into(), json!(d));
    }
    Value::Object(m)
}

pub(super) fn feed_not_found() -> Response {
    amz_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The requested feed was not found.",
        "",
    )
}

pub(super) async fn get_feed(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let op = "getFeed";
    let r = async {
        sim.gate(op, &headers).await?;
        let st = lock(&sim.state);
        match st.feeds.get(&id) {
            Some(f) => Ok(json_response(StatusCode::OK, &feed_json(f))),
            None => Err(feed_not_found()),
        }
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

/// Only a feed still IN_QUEUE can be cancelled (error code for the others UNCONFIRMED).
pub(super) async fn cancel_feed(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let op = "cancelFeed";
    let r = async {
        sim.gate(op, &headers).await?;
        let mut st = lock(&sim.state);
        let Some(f) = st.feeds.get_mut(&id) else {
            return Err(feed_not_found());
        };
        if f.status != FeedStatus::InQueue {
            return Err(invalid_input(
                "Only feeds in the IN_QUEUE status can be cancelled.",
            ));
        }
        f.status = FeedStatus::Cancelled;
        f.ended = Some(sim.now());
        Ok(StatusCode::OK.into_response())
    }
    .await;
    sim.finish(op, r.unwrap_or_else(|e| e))
}

/// The oneOf branches of listings-feed-schema-v2.json, per operationType.
pub(super) fn check_message_schema(m: &Value) -> Result<(), String> {
    let Some(o) = m.as_object() else {
        return Err("The message must be an object.".into());
    };
    match o.get("messageId").and_then(Value::as_i64) {
        Some(id) if (1..=2_147_483_647).contains(&id) => {}
        _ => {
            return Err(
                "'messageId' is required and must be an integer between 1 and 2147483647.".into(),
            )
        }
    }
    if o.get("sku")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("'sku' is required and must be a non-empty string.".into());
    }
    let op = o.get("operationType").and_then(Value::as_str).unwrap_or("");
    let (required, forbidden): (&[&str], &[&str]) = match op {
        "UPDATE" => (&["productType", "attributes"], &["patches"]),
        "PARTIAL_UPDATE" => (&["productType", "attributes"], &["requirements", "patches"]),
        "PATCH" => (&["productType", "patches"], &["requirements", "attributes"]),
        "DELETE" => (
            &[],
            &["requirements", "attributes", "productType", "patches"],
        ),
        _ => return Err(
            "'operationType' is required and must be one of UPDATE, PARTIAL_UPDATE, PATCH, DELETE."
                .into(),
        ),
    };
    for k in required {
        if !o.contains_key(*k) {
            return Err(format!("'{k}' is required for operationType {op}."));
        }
    }
    for k in forbidden {
        if o.contains_key(*k) {
            return Err(format!("'{k}' is not applicable to operationType {op}."));
        }
    }
    if let Some(pt) = o.get("productType") {
        if pt.as_str().is_none_or(str::is_empty) {
            return Err("'productType' must be a non-empty string.".into());
        }
    }
    if let Some(r) = o.get("requirements") {
        if !matches!(
            r.as_str(),
            Some("LISTING" | "LISTING_PRODUCT_ONLY" | "LISTING_OFFER_ONLY")
        ) {
            return Err(
                "'requirements' must be LISTING, LISTING_PRODUCT_ONLY or LISTING_OFFER_ONLY."
                    .into(),
            );
        }
    }
    if let Some(a) = o.get("attributes") {
        if a.as_object().is_none_or(Map::is_empty) {
            return Err("'attributes' must be an object with at least 1 property.".into());
        }
    }
    if let Some(p) = o.get("patches") {
        match p.as_array() {
            Some(a) if !a.is_empty() => {
                for (i, x) in a.iter().enumerate() {
                    check_patch_schema(x, i)?;
                }
            }
            _ => return Err("'patches' must be an array with at least 1 item.".into()),
        }
    }
    Ok(())
}

/// Feed-level validation: header and messages (listings-feed-schema-v2.json).
pub(super) fn check_feed_document(
    doc: &Value,
    max: usize,
) -> Result<(&Map<String, Value>, &Vec<Value>), String> {
    let Some(o) = doc.as_object() else {
        return Err("The feed document must be a JSON object.".into());
    };
    let Some(h) = o.get("header").and_then(Value::as_object) else {
        return Err("'header' is required.".into());
    };
    if !h.get("sellerId").is_some_and(Value::is_string) {
        return Err("'header.sellerId' is required.".into());
    }
    if h.get("version").and_then(Value::as_str) != Some("2.0") {
        return Err("'header.version' is required and must be \"2.0\".".into());
    }
    let Some(msgs) = o.get("messages").and_then(Value::as_array) else {
        return Err("'messages' is required and must be an array.".into());
    };
    if msgs.is_empty() {
        return Err("'messages' must contain at least 1 message.".into());
    }
    if msgs.len() > max {
        return Err(format!(
            "The feed contains {} messages; the maximum is {max}.",
            msgs.len()
        ));
    }
    Ok((h, msgs))
}

pub(super) fn fatal_issue(message: String) -> Issue {
    Issue {
        code: "4000001",
        message,
        attribute: None,
        category: None,
    }
}

impl Amazon {
    pub(super) fn schedule_feed(self: &Arc<Self>, id: String) {
        let sim = Arc::clone(self);
        let mut stop = self.core.shutdown_signal();
        let first = self.config.feed_delay / 2;
        let second = self.config.feed_delay.saturating_sub(first);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(first) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            {
                let mut st = lock(&sim.state);
                let Some(f) = st.feeds.get_mut(&id) else {
                    return;
                };
                if f.status != FeedStatus::InQueue {
                    return;
                }
                f.status = FeedStatus::InProgress;
                f.started = Some(sim.now());
            }
            tokio::select! {
                _ = tokio::time::sleep(second) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            sim.finish_feed(&id);
        });
    }

    pub(super) fn store_report(&self, st: &mut AmzState, report: &Value) -> String {
        let id = format!("amzn1.tortuga.4.eu.{}", self.core.uuid());
        st.docs.insert(
            id.clone(),
            Document {
                content_type: "application/json; charset=UTF-8".into(),
                body: Some(report.to_string().into_bytes()),
            },
        );
        id
    }

    pub(super) fn finish_feed(&self, id: &str) {
        let mut st = lock(&self.state);
        let forced = st.feed_outcomes.pop_front();
        let Some(f) = st.feeds.get(id) else { return };
        let input = st.docs.get(&f.input_doc).and_then(|d| d.body.clone());
        let feed_type = f.feed_type.clone();
        let header = json!({"sellerId": self.config.seller_id, "version": "2.0", "feedId": id});
        let fatal_report = |msg: String| {
            json!({
                "header": header,
                "issues": [fatal_issue(msg).report_json(None, None)],
                "summary": {"errors": 1, "warnings": 0, "messagesProcessed": 0,
                            "messagesAccepted": 0, "messagesInvalid": 0},
            })
        };
        let (status, report) = match forced {
            Some(FeedStatus::Cancelled) => {
                Counters::add(&self.core.counters.injected_faults, 1);
                (FeedStatus::Cancelled, None)
            }
            Some(FeedStatus::Fatal) => {
                Counters::add(&self.core.counters.injected_faults, 1);
                (
                    FeedStatus::Fatal,
                    Some(fatal_report(
                        "Injected fatal error: the feed could not be processed.".into(),
                    )),
                )
            }
            _ if feed_type != "JSON_LISTINGS_FEED" => (
                FeedStatus::Fatal,
                Some(fatal_report(format!(
                    "The feed type {feed_type} is not supported by this simulator."
                ))),
            ),
            _ => match input.as_deref().map(serde_json::from_slice::<Value>) {
                None => (
                    FeedStatus::Fatal,
                    Some(fatal_report("The feed document was never uploaded.".into())),
                ),
                Some(Err(e)) => (
                    FeedStatus::Fatal,
                    Some(fatal_report(format!(
                        "The feed document is not valid JSON: {e}"
                    ))),
                ),
                Some(Ok(doc)) => match check_feed_document(&doc, self.config.max_feed_messages) {
                    Err(e) => (FeedStatus::Fatal, Some(fatal_report(e))),
                    Ok((h, msgs)) => {
                        let report = self.process_messages(&mut st, id, h, msgs);
                        (FeedStatus::Done, Some(report))
                    }
                },
            },
        };
        let result_doc = report.map(|r| self.store_report(&mut st, &r));
        if let Some(f) = st.feeds.get_mut(id) {
            f.status = status;
            f.ended = Some(self.now());
            f.result_doc = result_doc;
        }
    }

    pub(super) fn process_messages(
        &self,
        st: &mut AmzState,
        feed_id: &str,
        h: &Map<String, Value>,
        msgs: &[Value],
    ) -> Value {
        let mut issues = Vec::new();
        let mut invalid = 0u64;
        let mut accepted_skus = Vec::new();
        for m in msgs {
            let mid = m.get("messageId").and_then(Value::as_i64);
            let sku = m
                .get("sku")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let found = match self.process_message(st, m, &sku) {
                Ok(()) => Vec::new(),
                Err(found) => found,
            };
            if found.is_empty() {
                accepted_skus.push(sku);
            } else {
                invalid += 1;
                issues.extend(found.iter().map(|i| i.report_json(mid, Some(&sku))));
            }
        }
        let mut header =
            json!({"sellerId": self.config.seller_id, "version": "2.0", "feedId": feed_id});
        let included = h
            .get("report")
            .and_then(|r| r.get("includedData"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            });
        if let Some(r) = h.get("report") {
            header["report"] = r.clone();
        }
        let n = msgs.len() as u64;
        let mut report = json!({
            "header": header,
            "issues": issues,
            "summary": {
                "errors": issues.len(),
                "warnings": 0,
                "messagesProcessed": n,
                "messagesAccepted": n - invalid,
                "messagesInvalid": invalid,
            },
        });
        if let Some(inc) = included.filter(|i| !i.is_empty()) {
            let items: Vec<Value> = accepted_skus
                .iter()
                .filter_map(|s| st.listings.get(s))
                .map(|l| self.item_json(l, &inc))
                .collect();
            report["summary"]["itemSummary"] =
                json!({"items": items.len(), "errors": 0, "warnings": 0});
            report["items"] = Value::Array(items);
        }
        report
    }

    pub(super) fn process_message(
        &self,
        st: &mut AmzState,
        m: &Value,
        sku: &str,
    ) -> Result<(), Vec<Issue>> {
        check_message_schema(m).map_err(|e| vec![fatal_issue(e)])?;
        if self.core.rejects_sku(sku) {
            return Err(vec![rejected_sku(sku)]);
        }
        let op = m.get("operationType").and_then(Value::as_str).unwrap_or("");
        if op == "DELETE" {
            st.listings.remove(sku);
            return Ok(());
        }
        // PARTIAL_UPDATE equals PATCH with `replace` (feed schema); UPDATE replaces everything.
        let patches: Vec<Value> = match op {
            "PATCH" => m
                .get("patches")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            _ => m
                .get("attributes")
                .and_then(Value::as_object)
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            json!({"op": "replace", "path": format!("/attributes/{k}"), "value": v})
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        for (i, p) in patches.iter().enumerate() {
            check_patch_schema(p, i).map_err(|e| vec![fatal_issue(e)])?;
        }
        st.seq += 1;
        let seq = st.seq;
        let Some(l) = st.listings.get_mut(sku) else {
            return Err(vec![unknown_sku(sku)]);
        };
        let mut copy = l.clone();
        if op == "UPDATE" {
            copy.fa = None;
            copy.attrs.clear();
        }
        let issues = apply_patches(&mut copy, &patches);
        if !issues.is_empty() {
            return Err(issues);
        }
        copy.applied_seq = seq;
        copy.updated = self.now();
        *l = copy;
        Counters::add(&self.core.counters.updates_applied, 1);
        Ok(())
    }
}
