use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stockd_sim::amazon::{default_rate_limits, start, Config, RateLimit, MARKETPLACE_ID};
use stockd_sim::{Faults, RunningSim};

use crate::common_support::{any_addr, receiver};

const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../specs/amazon/");

fn spec(name: &str) -> Value {
    let path = format!("{SPECS}{name}");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("spec file {path} is required: {e}"));
    serde_json::from_str(&text).expect("spec json")
}

/// Checks `value` against the required fields, basic types and enums of a JSON schema node,
/// following `#/definitions/…` references of `root`.
fn conforms(root: &Value, schema: &Value, value: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/definitions/");
        let target = &root["definitions"][name];
        assert!(!target.is_null(), "unresolved {r}");
        return conforms(root, target, value, path, errs);
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            "null" => value.is_null(),
            _ => true,
        });
        if !types.is_empty() && !ok {
            errs.push(format!("{path}: {value} is not {types:?}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(value) {
            errs.push(format!("{path}: {value} not in enum"));
        }
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for k in req.iter().filter_map(Value::as_str) {
            if value.get(k).is_none() {
                errs.push(format!("{path}.{k} is required"));
            }
        }
    }
    if let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for (k, sub) in props {
            if let Some(v) = obj.get(k) {
                conforms(root, sub, v, &format!("{path}.{k}"), errs);
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            conforms(root, items, v, &format!("{path}[{i}]"), errs);
        }
    }
}

fn assert_conforms(root: &Value, schema: &Value, value: &Value) {
    let mut errs = Vec::new();
    conforms(root, schema, value, "$", &mut errs);
    assert!(errs.is_empty(), "{errs:#?}\n{value:#}");
}

fn fast_config() -> Config {
    Config {
        listing_delay: Duration::from_millis(150),
        feed_delay: Duration::from_millis(120),
        ..Config::default()
    }
}

async fn sim_with(cfg: Config) -> RunningSim {
    start(cfg, any_addr()).await.expect("start")
}

async fn token(sim: &RunningSim, cfg: &Config) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/auth/o2/token", sim.base_url))
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=UTF-8",
        )
        .body(format!(
            "grant_type=refresh_token&refresh_token={}&client_id={}&client_secret={}",
            cfg.refresh_token.replace('|', "%7C"),
            cfg.client_id,
            cfg.client_secret
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

struct Api {
    base: String,
    token: String,
    seller: String,
    c: reqwest::Client,
}

impl Api {
    async fn new(sim: &RunningSim, cfg: &Config) -> Api {
        Api {
            base: sim.base_url.clone(),
            token: token(sim, cfg).await,
            seller: cfg.seller_id.clone(),
            c: reqwest::Client::new(),
        }
    }
    async fn send(&self, rb: reqwest::RequestBuilder) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = rb
            .header("x-amz-access-token", &self.token)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let h = r.headers().clone();
        let text = r.text().await.unwrap();
        (s, serde_json::from_str(&text).unwrap_or(Value::Null), h)
    }
    fn item_url(&self, sku: &str, extra: &str) -> String {
        format!(
            "{}/listings/2021-08-01/items/{}/{sku}?marketplaceIds=A1805IZSGTT6HS{extra}",
            self.base, self.seller
        )
    }
    async fn patch(
        &self,
        sku: &str,
        extra: &str,
        body: Value,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        self.send(self.c.patch(self.item_url(sku, extra)).json(&body))
            .await
    }
    async fn get(&self, url: String) -> (u16, Value, reqwest::header::HeaderMap) {
        self.send(self.c.get(url)).await
    }
}

fn merge_qty(q: Value) -> Value {
    json!({"productType": "PRODUCT", "patches": [{"op": "merge",
        "path": "/attributes/fulfillment_availability",
        "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": q}]}]})
}

fn qty(sim: &RunningSim, sku: &str) -> i64 {
    sim.listings()
        .into_iter()
        .find(|l| l.sku == sku)
        .map(|l| l.quantity)
        .unwrap_or(-1)
}

async fn wait_until<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn lwa_token_flow_and_access_token_errors() {
    let cfg = Config {
        token_ttl_secs: 3600,
        ..fast_config()
    };
    let sim = sim_with(cfg.clone()).await;
    sim.add_listings(&[("A-1".into(), 3)]);
    let c = reqwest::Client::new();
    let url = format!("{}/auth/o2/token", sim.base_url);
    let form = |body: String| {
        c.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let r = form(format!(
        "grant_type=refresh_token&refresh_token=x&client_id={}&client_secret=wrong",
        cfg.client_id
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = form(format!(
        "grant_type=refresh_token&refresh_token=Atzr%7Cother&client_id={}&client_secret={}",
        cfg.client_id, cfg.client_secret
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = form("grant_type=authorization_code".into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );

    let r = form(format!(
        "grant_type=refresh_token&refresh_token={}&client_id={}&client_secret={}",
        cfg.refresh_token.replace('|', "%7C"),
        cfg.client_id,
        cfg.client_secret
    ))
    .send()
    .await
    .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["token_type"], "bearer");
    let tok = v["access_token"].as_str().unwrap().to_string();
    let tokens: Value = c
        .get(format!("{}/_sim/amazon/tokens", sim.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["issued"], 1);

    let item = format!(
        "{}/listings/2021-08-01/items/{}/A-1?marketplaceIds=A1805IZSGTT6HS",
        sim.base_url, cfg.seller_id
    );
    let r = c
        .get(&item)
        .header("x-amz-access-token", &tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-amzn-ratelimit-limit"], "5.0");
    assert_eq!(r.headers()["x-amzn-requestid"].len(), 36);
    for (hdr, details) in [
        (None, ""),
        (
            Some("Atza|forged"),
            "The access token you provided is revoked, malformed or invalid.",
        ),
    ] {
        let mut rb = c.get(&item);
        if let Some(h) = hdr {
            rb = rb.header("x-amz-access-token", h);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403);
        assert!(r.headers().get("x-amzn-ratelimit-limit").is_none());
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errors"][0]["code"], "Unauthorized");
        assert_eq!(v["errors"][0]["details"], details);
    }
    sim.shutdown().await;

    // Tokens that live 0 s are expired on first use.
    let cfg = Config {
        token_ttl_secs: 0,
        ..fast_config()
    };
    let sim = sim_with(cfg.clone()).await;
    sim.add_listings(&[("A-1".into(), 3)]);
    let api = Api::new(&sim, &cfg).await;
    let (s, v, _) = api.get(api.item_url("A-1", "")).await;
    assert_eq!(s, 403);
    assert_eq!(
        v["errors"][0]["details"],
        "The access token you provided has expired."
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn patch_merge_is_applied_after_the_delay() {
    let cfg = fast_config();
    let sim = sim_with(cfg.clone()).await;
    sim.add_listings(&[("SKU-1".into(), 5)]);
    let ext = &sim.listings()[0].external;
    assert_eq!(
        Value::Object(ext.clone()),
        json!({"seller_sku": "SKU-1", "marketplace_id": "A1805IZSGTT6HS", "product_type": "PRODUCT"})
    );
    let api = Api::new(&sim, &cfg).await;
    let model = spec("listingsItems_2021-08-01.json");

    // A replace with a lead time, then a merge of the quantity alone keeps the lead time.
    let (s, v, h) = api
        .patch(
            "SKU-1",
            "",
            json!({"productType": "PRODUCT", "patches": [{"op": "replace",
                "path": "/attributes/fulfillment_availability",
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 7, "lead_time_to_ship_max_days": 3}]}]}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "ACCEPTED");
    assert_eq!(h["x-amzn-ratelimit-limit"], "5.0");
    assert_conforms(
        &model,
        &model["definitions"]["ListingsItemSubmissionResponse"],
        &v,
    );
    let (s, v, _) = api.patch("SKU-1", "", merge_qty(json!(11))).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ACCEPTED")));
    assert_eq!(v["submissionId"].as_str().unwrap().len(), 36);
    // ACCEPTED is only queued.
    assert_eq!(qty(&sim, "SKU-1"), 5);
    wait_until("merge applied", || qty(&sim, "SKU-1") == 11).await;
    assert_eq!(sim.stats().updates_applied, 2);
    let (s, item, _) = api
        .get(api.item_url(
            "SKU-1",
            "&includedData=fulfillmentAvailability,attributes,summaries",
        ))
        .await;
    assert_eq!(s, 200);
    assert_conforms(&model, &model["definitions"]["Item"], &item);
    assert_eq!(
        item["fulfillmentAvailability"],
        json!([{"fulfillmentChannelCode": "DEFAULT", "quantity": 11}])
    );
    assert_eq!(
        item["attributes"]["fulfillment_availability"][0]["lead_time_to_ship_max_days"],
        3
    );
    assert_eq!(
        item["summaries"][0]["status"],
        json!(["BUYABLE", "DISCOVERABLE"])
    );

    // VALIDATION_PREVIEW validates without applying.
    let (_, v, _) = api
        .patch("SKU-1", "&mode=VALIDATION_PREVIEW", merge_qty(json!(0)))
        .await;
    assert_eq!(v["status"], "VALID");
    // Unknown SKUs are 404 on read.
    let (s, v, _) = api.get(api.item_url("NOPE", "")).await;
    assert_eq!(s, 404);
    assert!(v["errors"][0]["code"].is_string());
    // Search by SKU.
    let (s, v, _) = api
        .get(format!(
            "{}/listings/2021-08-01/items/{}?marketplaceIds=A1805IZSGTT6HS&identifiers=SKU-1&identifiersType=SKU&includedData=fulfillmentAvailability",
            api.base, api.seller
        ))
        .await;
    assert_eq!(s, 200);
    assert_conforms(&model, &model["definitions"]["ItemSearchResults"], &v);
    assert_eq!(v["numberOfResults"], 1);
    tokio::time::sleep(cfg.listing_delay * 2).await;
    assert_eq!(qty(&sim, "SKU-1"), 11, "the preview must not be applied");
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_submissions_report_issues_and_bad_bodies_are_400() {
    let cfg = unthrottled();
    let sim = sim_with(cfg.clone()).await;
    sim.add_listings(&[("S".into(), 2), ("R".into(), 2)]);
    sim.set_faults(Faults {
        reject_skus: vec!["R".into()],
        ..Default::default()
    });
    let api = Api::new(&sim, &cfg).await;
    let model = spec("listingsItems_2021-08-01.json");
    let cases = [
        ("S", merge_qty(json!(-1)), "90000900"),
        ("S", merge_qty(json!(2.5)), "90000900"),
        ("S", merge_qty(json!("3")), "90000900"),
        (
            "S",
            json!({"productType": "PRODUCT", "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability",
                "value": [{"quantity": 3}]}]}),
            "90220",
        ),
        (
            "S",
            json!({"productType": "PRODUCT", "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability/0/quantity",
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}]}]}),
            "4000001",
        ),
        ("UNKNOWN", merge_qty(json!(1)), "4000004"),
        ("R", merge_qty(json!(1)), "8572"),
    ];
    for (sku, body, code) in cases {
        let (s, v, _) = api.patch(sku, "", body.clone()).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(v["status"], "INVALID", "{body}");
        assert_eq!(v["issues"][0]["code"], code, "{v}");
        assert_eq!(v["issues"][0]["severity"], "ERROR");
        assert_conforms(
            &model,
            &model["definitions"]["ListingsItemSubmissionResponse"],
            &v,
        );
    }
    for body in [
        json!({"patches": [{"op": "merge", "path": "/attributes/fulfillment_availability", "value": []}]}),
        json!({"productType": "PRODUCT", "patches": []}),
        json!({"productType": "PRODUCT", "patches": [{"op": "move", "path": "/attributes/x"}]}),
        json!({"productType": "PRODUCT", "patches": [{"op": "merge"}]}),
        json!({"productType": "PRODUCT", "patches": [{"op": "merge", "path": "/attributes/x", "value": [1]}]}),
    ] {
        let (s, v, h) = api.patch("S", "", body.clone()).await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(v["errors"][0]["code"], "BAD_REQUEST");
        assert_eq!(v["errors"][0]["message"], "Invalid input");
        assert!(h.contains_key("x-amzn-ratelimit-limit"));
    }
    // marketplaceIds is required.
    let (s, _, _) = api
        .send(
            api.c
                .patch(format!(
                    "{}/listings/2021-08-01/items/{}/S",
                    api.base, api.seller
                ))
                .json(&merge_qty(json!(1))),
        )
        .await;
    assert_eq!(s, 400);
    tokio::time::sleep(cfg.listing_delay * 2).await;
    assert_eq!(qty(&sim, "S"), 2);
    assert_eq!(sim.stats().updates_applied, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn patch_bucket_answers_429_quota_exceeded() {
    let cfg = fast_config();
    assert_eq!(
        cfg.rate_limits["patchListingsItem"],
        RateLimit {
            rate: 5.0,
            burst: 5.0
        }
    );
    let sim = sim_with(cfg.clone()).await;
    sim.add_listings(&[("S".into(), 2)]);
    let api = Api::new(&sim, &cfg).await;
    let n = 15;
    let t0 = Instant::now();
    let results = futures_join(&api, n).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let throttled: Vec<&(u16, Value, reqwest::header::HeaderMap)> =
        results.iter().filter(|r| r.0 == 429).collect();
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok + throttled.len(), n);
    // Burst 5 plus at most 5 tokens per second of elapsed time.
    assert!(
        ok as f64 <= 5.0 + (elapsed * 5.0).ceil(),
        "{ok} accepted in {elapsed}s"
    );
    assert!(!throttled.is_empty());
    for (_, v, h) in &throttled {
        assert_eq!(
            *v,
            json!({"errors":[{"code":"QuotaExceeded","message":"You exceeded your quota for the requested resource.","details":""}]})
        );
        assert!(h.get("x-amzn-ratelimit-limit").is_none());
        assert!(h.contains_key("x-amzn-requestid"));
    }
    assert_eq!(sim.stats().rate_limit_violations, throttled.len() as u64);
    assert_eq!(sim.stats().injected_faults, 0);
    sim.shutdown().await;
}

async fn futures_join(api: &Api, n: usize) -> Vec<(u16, Value, reqwest::header::HeaderMap)> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let rb = api
            .c
            .patch(api.item_url("S", "&mode=VALIDATION_PREVIEW"))
            .header("x-amz-access-token", &api.token)
            .json(&merge_qty(json!(1)));
        set.spawn(async move {
            let r = rb.send().await.unwrap();
            let s = r.status().as_u16();
            let h = r.headers().clone();
            (s, r.json::<Value>().await.unwrap_or(Value::Null), h)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

/// createFeedDocument → PUT → createFeed → poll getFeed → getFeedDocument → report.
async fn run_feed(api: &Api, doc: &Value) -> (Vec<String>, Value, Option<Value>) {
    let (s, d, _) = api
        .send(
            api.c
                .post(format!("{}/feeds/2021-06-30/documents", api.base))
                .json(&json!({"contentType": "application/json; charset=UTF-8"})),
        )
        .await;
    assert_eq!(s, 201);
    let url = d["url"].as_str().unwrap().to_string();
    let r = api.c.put(&url).body(doc.to_string()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, f, _) = api
        .send(
            api.c
                .post(format!("{}/feeds/2021-06-30/feeds", api.base))
                .json(&json!({
                    "feedType": "JSON_LISTINGS_FEED",
                    "marketplaceIds": ["A1805IZSGTT6HS"],
                    "inputFeedDocumentId": d["feedDocumentId"],
                })),
        )
        .await;
    assert_eq!(s, 202);
    let id = f["feedId"].as_str().unwrap().to_string();
    let feeds_model = spec("feeds_2021-06-30.json");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let feed = loop {
        let (s, f, _) = api
            .get(format!("{}/feeds/2021-06-30/feeds/{id}", api.base))
            .await;
        assert_eq!(s, 200);
        assert_conforms(&feeds_model, &feeds_model["definitions"]["Feed"], &f);
        let st = f["processingStatus"].as_str().unwrap().to_string();
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        if matches!(st.as_str(), "DONE" | "FATAL" | "CANCELLED") {
            break f;
        }
        assert!(Instant::now() < deadline, "feed stuck in {st}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let report = match feed["resultFeedDocumentId"].as_str() {
        None => None,
        Some(rid) => {
            let (s, d, _) = api
                .get(format!("{}/feeds/2021-06-30/documents/{rid}", api.base))
                .await;
            assert_eq!(s, 200);
            assert_conforms(
                &feeds_model,
                &feeds_model["definitions"]["FeedDocument"],
                &d,
            );
            let body = api
                .c
                .get(d["url"].as_str().unwrap())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            Some(serde_json::from_str(&body).unwrap())
        }
    };
    (seen, feed, report)
}

/// Limits lifted for tests whose subject is not rate limiting (the feed document operations
/// allow 0.0222 rps in production, `getFeed` 2 rps).
fn unthrottled() -> Config {
    let mut limits = default_rate_limits();
    for l in limits.values_mut() {
        *l = RateLimit {
            rate: 1000.0,
            burst: 1000.0,
        };
    }
    Config {
        rate_limits: limits,
        ..fast_config()
    }
}

fn feed_config() -> Config {
    Config {
        feed_delay: Duration::from_millis(400),
        ..unthrottled()
    }
}

#[tokio::test]
async fn feed_flow_with_one_failing_message() {
    let cfg = feed_config();
    let sim = sim_with(cfg.clone()).await;
    sim.add_listings(&[("F-1".into(), 1), ("F-2".into(), 1), ("F-BAD".into(), 1)]);
    sim.set_faults(Faults {
        reject_skus: vec!["F-BAD".into()],
        ..Default::default()
    });
    let api = Api::new(&sim, &cfg).await;
    let msg = |id: i64, sku: &str, q: i64| {
        json!({"messageId": id, "sku": sku, "operationType": "PATCH", "productType": "PRODUCT",
            "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability",
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": q}]}]})
    };
    let doc = json!({
        "header": {"sellerId": cfg.seller_id, "version": "2.0", "issueLocale": "en_US"},
        "messages": [msg(1, "F-1", 10), msg(2, "F-BAD", 20), msg(3, "F-2", 30),
            {"messageId": 4, "sku": "F-2", "operationType": "PATCH", "productType": "PRODUCT"}],
    });
    let feed_schema = spec("listings-feed-schema-v2.json");
    assert_conforms(&feed_schema, &feed_schema, &doc);
    let (seen, _, report) = run_feed(&api, &doc).await;
    assert_eq!(seen.first().map(String::as_str), Some("IN_QUEUE"));
    assert_eq!(seen.last().map(String::as_str), Some("DONE"));
    let report = report.expect("report");
    let report_schema = spec("listings-feed-processing-report-schema-v2.json");
    assert_conforms(&report_schema, &report_schema, &report);
    assert_eq!(report["summary"]["messagesProcessed"], 4);
    assert_eq!(report["summary"]["messagesAccepted"], 2);
    assert_eq!(report["summary"]["messagesInvalid"], 2);
    let issues = report["issues"].as_array().unwrap();
    assert_eq!(issues[0]["messageId"], 2);
    assert_eq!(issues[0]["sku"], "F-BAD");
    assert_eq!(issues[0]["severity"], "ERROR");
    assert_eq!(
        issues[1]["messageId"], 4,
        "PATCH without patches violates the schema"
    );
    assert_eq!(qty(&sim, "F-1"), 10);
    assert_eq!(qty(&sim, "F-2"), 30);
    assert_eq!(qty(&sim, "F-BAD"), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn feed_fatal_cancelled_and_message_cap() {
    let cfg = Config {
        max_feed_messages: 2,
        ..feed_config()
    };
    let sim = sim_with(cfg.clone()).await;
    sim.add_listings(&[("F-1".into(), 1)]);
    let api = Api::new(&sim, &cfg).await;
    let msg = |id: i64| {
        json!({"messageId": id, "sku": "F-1", "operationType": "PATCH", "productType": "PRODUCT",
            "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability",
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 9}]}]})
    };
    let doc =
        json!({"header": {"sellerId": cfg.seller_id, "version": "2.0"}, "messages": [msg(1)]});
    let r = api
        .c
        .post(format!("{}/_sim/amazon/feed_outcomes", sim.base_url))
        .json(&json!({"outcomes": ["FATAL", "CANCELLED"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let report_schema = spec("listings-feed-processing-report-schema-v2.json");
    let (_, feed, report) = run_feed(&api, &doc).await;
    assert_eq!(feed["processingStatus"], "FATAL");
    let report = report.expect("a FATAL feed has a report");
    assert_conforms(&report_schema, &report_schema, &report);
    assert_eq!(report["issues"][0]["severity"], "ERROR");
    let (_, feed, report) = run_feed(&api, &doc).await;
    assert_eq!(feed["processingStatus"], "CANCELLED");
    assert!(report.is_none());
    assert_eq!(qty(&sim, "F-1"), 1);
    assert_eq!(sim.stats().injected_faults, 2);
    // Over the message cap, and a missing header version: FATAL.
    let big = json!({"header": {"sellerId": cfg.seller_id, "version": "2.0"}, "messages": [msg(1), msg(2), msg(3)]});
    let (_, feed, report) = run_feed(&api, &big).await;
    assert_eq!(feed["processingStatus"], "FATAL");
    assert!(report.unwrap()["issues"][0]["message"]
        .as_str()
        .unwrap()
        .contains("maximum is 2"));
    let bad = json!({"header": {"sellerId": cfg.seller_id}, "messages": [msg(1)]});
    let (_, feed, _) = run_feed(&api, &bad).await;
    assert_eq!(feed["processingStatus"], "FATAL");
    assert_eq!(qty(&sim, "F-1"), 1);
    // Then a normal feed goes through.
    let (_, feed, _) = run_feed(&api, &doc).await;
    assert_eq!(feed["processingStatus"], "DONE");
    assert_eq!(qty(&sim, "F-1"), 9);
    sim.shutdown().await;
}

#[tokio::test]
async fn search_orders_shapes_pagination_and_rules() {
    let cfg = fast_config();
    assert_eq!(
        cfg.rate_limits["searchOrders"],
        RateLimit {
            rate: 0.0056,
            burst: 20.0
        }
    );
    let sim = sim_with(cfg.clone()).await;
    sim.add_listings(&[("O-1".into(), 5), ("O-2".into(), 5)]);
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    let id1 = sim
        .buy(&[("O-1".into(), 2), ("O-2".into(), 1)])
        .await
        .unwrap();
    let id2 = sim.buy(&[("O-2".into(), 4)]).await.unwrap();
    assert_eq!(
        sim.buy(&[("O-2".into(), 1)]).await,
        Err(stockd_sim::SimError::NotAvailable)
    );
    assert_eq!(qty(&sim, "O-1"), 3);
    assert_eq!(qty(&sim, "O-2"), 0);
    let api = Api::new(&sim, &cfg).await;
    let model = spec("orders_2026-01-01.json");
    let base = format!("{}/orders/2026-01-01/orders", api.base);
    let after = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for bad in [
        String::new(),
        format!("?createdAfter={after}&lastUpdatedAfter={after}"),
        format!("?createdAfter={after}&lastUpdatedBefore={after}"),
        "?createdAfter=yesterday".to_string(),
        format!("?createdAfter={after}&fulfillmentStatuses=OPEN"),
        format!("?createdAfter={after}&maxResultsPerPage=101"),
        // Before must be at least two minutes before now.
        format!(
            "?createdAfter={after}&createdBefore={}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    ] {
        let (s, v, _) = api.get(format!("{base}{bad}")).await;
        assert_eq!(s, 400, "{bad}");
        assert_eq!(v["errors"][0]["code"], "InvalidInput");
    }
    let (s, v, h) = api
        .get(format!(
            "{base}?createdAfter={after}&includedData=FULFILLMENT&maxResultsPerPage=1"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(h["x-amzn-ratelimit-limit"], "0.0056");
    assert_conforms(&model, &model["definitions"]["SearchOrdersResponse"], &v);
    let o = &v["orders"][0];
    assert_eq!(o["orderId"], id1.as_str());
    assert_eq!(o["orderItems"][0]["product"]["sellerSku"], "O-1");
    assert_eq!(o["orderItems"][0]["quantityOrdered"], 2);
    assert_eq!(o["fulfillment"]["fulfillmentStatus"], "UNSHIPPED");
    assert!(v["createdBefore"].is_string());
    let next = v["pagination"]["nextToken"].as_str().unwrap().to_string();
    let (s, v, _) = api
        .get(format!(
            "{base}?createdAfter={after}&paginationToken={next}"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["orders"][0]["orderId"], id2.as_str());
    assert!(
        v["orders"][0].get("fulfillment").is_none(),
        "only with includedData=FULFILLMENT"
    );
    assert!(v.get("pagination").is_none());
    let (s, _, _) = api
        .get(format!(
            "{base}?lastUpdatedAfter={after}&paginationToken={next}"
        ))
        .await;
    assert_eq!(s, 400, "a token is bound to its filters");

    // Cancel: stock returns, lastUpdatedTime moves, the status filter sees it.
    let before_cancel = chrono::Utc::now();
    sim.cancel_order(&id2).await.unwrap();
    assert_eq!(qty(&sim, "O-2"), 4);
    let (s, v, _) = api
        .get(format!(
            "{base}?lastUpdatedAfter={}&fulfillmentStatuses=CANCELLED&includedData=FULFILLMENT,CANCELLATION",
            before_cancel.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ))
        .await;
    assert_eq!(s, 200);
    assert_conforms(&model, &model["definitions"]["SearchOrdersResponse"], &v);
    assert_eq!(v["orders"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["orders"][0]["fulfillment"]["fulfillmentStatus"],
        "CANCELLED"
    );
    assert!(v["orders"][0]["orderItems"][0]["cancellation"].is_object());
    let (s, v, _) = api.get(format!("{base}/{id1}")).await;
    assert_eq!(s, 200);
    assert_conforms(&model, &model["definitions"]["GetOrderResponse"], &v);
    let (s, _, _) = api.get(format!("{base}/000-0000000-0000000")).await;
    assert_eq!(s, 404);
    sim.shutdown().await;
}

fn verify(secret: &str, r: &crate::common_support::Received) {
    assert_eq!(
        r.header("x-stockd-signature"),
        stockd_sim::hmac_sha256_base64(secret.as_bytes(), &r.body)
    );
}

#[tokio::test]
async fn order_change_notifications_are_signed_and_shaped() {
    let (url, sink) = receiver().await;
    let cfg = Config {
        notification_url: Some(url),
        notification_secret: "s3cret".into(),
        ..fast_config()
    };
    let sim = sim_with(cfg).await;
    sim.add_listings(&[("N-1".into(), 3)]);
    let id = sim.buy(&[("N-1".into(), 2)]).await.unwrap();
    sim.cancel_order(&id).await.unwrap();
    let got = sink.wait_for(2).await;
    assert_eq!(got.len(), 2);
    let schema = spec("OrderChangeNotification.json");
    for r in &got {
        verify("s3cret", r);
        assert_conforms(&schema, &schema, &r.json());
    }
    let first = got[0].json();
    let n = &first["Payload"]["OrderChangeNotification"];
    assert_eq!(first["NotificationType"], "ORDER_CHANGE");
    assert_eq!(n["AmazonOrderId"], id.as_str());
    assert_eq!(n["Summary"]["OrderStatus"], "Unshipped");
    assert_eq!(n["Summary"]["OrderItems"][0]["SellerSKU"], "N-1");
    assert_eq!(n["Summary"]["OrderItems"][0]["Quantity"], 2);
    let second = got[1].json();
    assert_eq!(
        second["Payload"]["OrderChangeNotification"]["Summary"]["OrderStatus"],
        "Canceled"
    );
    assert_ne!(
        first["NotificationMetadata"]["NotificationId"],
        second["NotificationMetadata"]["NotificationId"]
    );
    assert_eq!(qty(&sim, "N-1"), 3);
    // A delivery counts once its answer is in, a moment after the receiver
    // saw the body.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sim.stats().webhooks_sent < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.stats().webhooks_sent, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_notifications_are_identical() {
    let (url, sink) = receiver().await;
    let cfg = Config {
        notification_url: Some(url),
        ..fast_config()
    };
    let secret = cfg.notification_secret.clone();
    let sim = sim_with(cfg).await;
    sim.add_listings(&[("D-1".into(), 3)]);
    sim.set_faults(Faults {
        duplicate_webhook_rate: 1.0,
        ..Default::default()
    });
    sim.buy(&[("D-1".into(), 1)]).await.unwrap();
    let got = sink.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, got[1].body);
    verify(&secret, &got[1]);
    assert_eq!(sim.stats().injected_faults, 1);
    // A failing receiver is retried with the same body.
    let (url, sink) = receiver().await;
    *sink.script.lock().unwrap() = vec![500];
    let cfg = Config {
        notification_url: Some(url),
        notification_retry_delays: vec![Duration::from_millis(20)],
        ..fast_config()
    };
    let sim2 = sim_with(cfg).await;
    sim2.add_listings(&[("D-1".into(), 3)]);
    sim2.buy(&[("D-1".into(), 1)]).await.unwrap();
    let got = sink.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, got[1].body);
    // The simulator counts a delivery once it has the answer, which may be a
    // moment after the receiver saw the body.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sim2.stats().webhooks_sent < 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim2.stats().webhooks_failed, 1);
    assert_eq!(sim2.stats().webhooks_sent, 1);
    sim.shutdown().await;
    sim2.shutdown().await;
}

#[tokio::test]
async fn injected_throttle_and_outage_use_error_list() {
    let cfg = fast_config();
    let sim = sim_with(cfg.clone()).await;
    sim.add_listings(&[("S".into(), 1)]);
    let api = Api::new(&sim, &cfg).await;
    sim.set_faults(Faults {
        throttle_storm_secs: 60.0,
        ..Default::default()
    });
    let (s, v, _) = api.get(api.item_url("S", "")).await;
    assert_eq!(s, 429);
    assert_eq!(v["errors"][0]["code"], "QuotaExceeded");
    sim.set_faults(Faults {
        outage_secs: 60.0,
        ..Default::default()
    });
    let (s, v, _) = api.get(api.item_url("S", "")).await;
    assert_eq!(s, 503);
    assert!(v["errors"][0]["code"].is_string());
    let st = sim.stats();
    assert_eq!((st.injected_faults, st.rate_limit_violations), (2, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn listings_report_lifecycle_document_url_and_limits() {
    let cfg = Config {
        report_delay: Duration::from_secs(1),
        ..fast_config()
    };
    let sim = sim_with(cfg.clone()).await;
    let api = Api::new(&sim, &cfg).await;
    let reports = format!("{}/reports/2021-06-30/reports", api.base);

    // Nothing listed yet: Amazon cancels a report with no data to return.
    let (s, created, h) = api
        .send(api.c.post(&reports).json(
            &json!({"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": [MARKETPLACE_ID]}),
        ))
        .await;
    assert_eq!(s, 202, "{created}");
    assert_eq!(h["x-amzn-ratelimit-limit"], "0.0167");
    let empty = created["reportId"].as_str().unwrap().to_string();

    let (s, v, _) = api
        .send(
            api.c
                .post(&reports)
                .json(&json!({"marketplaceIds": [MARKETPLACE_ID]})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["errors"][0]["code"], "InvalidInput");
    let (s, _, _) = api
        .send(api.c.post(&reports).json(
            &json!({"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": ["ATVPDKIKX0DER"]}),
        ))
        .await;
    assert_eq!(s, 400, "a marketplace the seller does not sell in");

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, cancelled, _) = api.get(format!("{reports}/{empty}")).await;
        if cancelled["processingStatus"] == "CANCELLED" {
            assert!(cancelled.get("reportDocumentId").is_none());
            break;
        }
        assert_ne!(cancelled["processingStatus"], "DONE");
        assert!(Instant::now() < deadline, "never cancelled: {cancelled}");
        // getReport allows 2/s after a burst of 15.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    sim.add_listings(&[("TSV-1".into(), 3), ("TSV-2".into(), 0)]);
    let (s, created, _) = api
        .send(api.c.post(&reports).json(
            &json!({"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": [MARKETPLACE_ID]}),
        ))
        .await;
    assert_eq!(s, 202);
    let id = created["reportId"].as_str().unwrap().to_string();
    let (_, first, _) = api.get(format!("{reports}/{id}")).await;
    assert!(
        first["processingStatus"] == "IN_QUEUE" || first["processingStatus"] == "IN_PROGRESS",
        "{first}"
    );
    assert_eq!(first["reportType"], "GET_MERCHANT_LISTINGS_ALL_DATA");
    assert!(first.get("reportDocumentId").is_none());
    let mut report = first;
    let deadline = Instant::now() + Duration::from_secs(5);
    while report["processingStatus"] != "DONE" {
        assert!(Instant::now() < deadline, "report never finished: {report}");
        // getReport allows 2/s after a burst of 15.
        tokio::time::sleep(Duration::from_millis(250)).await;
        report = api.get(format!("{reports}/{id}")).await.1;
    }
    assert!(report["processingEndTime"].is_string());
    let (s, _, _) = api.send(api.c.delete(format!("{reports}/{id}"))).await;
    assert_eq!(s, 400, "only a report IN_QUEUE can be cancelled");

    let doc = report["reportDocumentId"].as_str().unwrap();
    let (s, document, _) = api
        .get(format!("{}/reports/2021-06-30/documents/{doc}", api.base))
        .await;
    assert_eq!(s, 200);
    assert_eq!(document["reportDocumentId"], doc);
    assert!(document.get("compressionAlgorithm").is_none());
    let url = document["url"].as_str().unwrap();
    // A pre-signed URL: no access token.
    let download = reqwest::get(url).await.unwrap();
    assert_eq!(download.status(), 200);
    let text = download.text().await.unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    assert_eq!(header, stockd_sim::amazon::LISTINGS_REPORT_COLUMNS.to_vec());
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(rows[0][col("seller-sku")], "TSV-1");
    assert_eq!(rows[0][col("quantity")], "3");
    assert_eq!(rows[0][col("status")], "Active");
    assert_eq!(rows[1][col("quantity")], "0");
    assert_eq!(rows[1][col("fulfillment-channel")], "DEFAULT");
    let forged = url.replace("X-Amz-Signature=", "X-Amz-Signature=x");
    assert_eq!(reqwest::get(forged).await.unwrap().status(), 403);

    // createReport: burst 15, then QuotaExceeded (four were sent above, the refused ones
    // included).
    let mut statuses = Vec::new();
    for _ in 0..13 {
        let (s, v, _) = api
            .send(api.c.post(&reports).json(
                &json!({"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": [MARKETPLACE_ID]}),
            ))
            .await;
        if s == 429 {
            assert_eq!(v["errors"][0]["code"], "QuotaExceeded");
        }
        statuses.push(s);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 11);
    assert_eq!(statuses.last(), Some(&429));
    sim.shutdown().await;
}
