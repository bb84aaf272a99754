use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use stockd_sim::woocommerce::{oauth_signature, start, Config};
use stockd_sim::{Faults, NewListing, RunningSim};

use crate::common_support::{any_addr, receiver};

const CK: &str = "ck_test";
const CS: &str = "cs_test";

async fn sim_with(cfg: Config) -> RunningSim {
    start(
        Config {
            consumer_key: CK.into(),
            consumer_secret: CS.into(),
            ..cfg
        },
        any_addr(),
    )
    .await
    .expect("start")
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Independent OAuth 1.0a HMAC-SHA256 signer (RFC 5849 §3.4), for checking the simulator.
fn sign_sha256(method: &str, url: &str, params: &[(String, String)], secret: &str) -> String {
    let mut ps: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    ps.sort();
    let base = format!("{method}&{}&{}", enc(url), enc(&ps.join("&")));
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(format!("{secret}&").as_bytes()).unwrap();
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn oauth_params(nonce: &str, method: &str, ts: i64) -> Vec<(String, String)> {
    vec![
        ("oauth_consumer_key".into(), CK.into()),
        ("oauth_nonce".into(), nonce.into()),
        ("oauth_signature_method".into(), method.into()),
        ("oauth_timestamp".into(), ts.to_string()),
    ]
}

fn query_string(ps: &[(String, String)]) -> String {
    ps.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A signed request URL for `path` (under /wp-json/wc/v3) with extra query parameters.
fn signed_url(
    sim: &RunningSim,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    nonce: &str,
) -> String {
    let url = format!("{}/wp-json/wc/v3{path}", sim.base_url);
    let mut ps = oauth_params(nonce, "HMAC-SHA256", chrono::Utc::now().timestamp());
    ps.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let sig = sign_sha256(method, &url, &ps, CS);
    ps.push(("oauth_signature".into(), sig));
    format!("{url}?{}", query_string(&ps))
}

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn nonce() -> String {
    format!(
        "n{}",
        NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

async fn call(
    sim: &RunningSim,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let url = signed_url(sim, method, path, extra, &nonce());
    let c = reqwest::Client::new();
    let mut req = c.request(method.parse().unwrap(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.text().await.unwrap();
    (s, serde_json::from_str(&text).unwrap_or(Value::Null), h)
}

#[tokio::test]
async fn oauth_over_http() {
    let sim = sim_with(Config::default()).await;
    sim.add_listings(&[("A".into(), 1)]);
    // HMAC-SHA256 signed independently.
    let (s, v, _) = call(&sim, "GET", "/products", &[("per_page", "5")], None).await;
    assert_eq!(s, 200, "{v}");
    // HMAC-SHA1 through the header form.
    let url = format!("{}/wp-json/wc/v3/products", sim.base_url);
    let ps = oauth_params("sha1-nonce", "HMAC-SHA1", chrono::Utc::now().timestamp());
    let sig = oauth_signature("GET", "HMAC-SHA1", &url, &ps, CS).unwrap();
    let header = format!(
        "OAuth {}, oauth_signature=\"{}\"",
        ps.iter()
            .map(|(k, v)| format!("{k}=\"{}\"", enc(v)))
            .collect::<Vec<_>>()
            .join(", "),
        enc(&sig)
    );
    let r = reqwest::Client::new()
        .get(&url)
        .header("Authorization", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Replaying the same nonce.
    let r = reqwest::Client::new()
        .get(&url)
        .header("Authorization", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Invalid nonce - nonce has already been used.");
    // Wrong signature.
    let mut ps = oauth_params("bad-sig", "HMAC-SHA256", chrono::Utc::now().timestamp());
    ps.push(("oauth_signature".into(), "AAAA".into()));
    let r = reqwest::Client::new()
        .get(format!("{url}?{}", query_string(&ps)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"code": "woocommerce_rest_authentication_error", "message": "Invalid signature - provided signature does not match.", "data": {"status": 401}})
    );
    // Old timestamp, correctly signed.
    let mut ps = oauth_params(
        "old",
        "HMAC-SHA256",
        chrono::Utc::now().timestamp() - 16 * 60,
    );
    let sig = sign_sha256("GET", &url, &ps, CS);
    ps.push(("oauth_signature".into(), sig));
    let v: Value = reqwest::Client::new()
        .get(format!("{url}?{}", query_string(&ps)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["message"], "Invalid timestamp.");
    // Missing parameters.
    let v: Value = reqwest::Client::new()
        .get(format!("{url}?oauth_consumer_key={CK}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["code"],
        "woocommerce_rest_authentication_missing_parameter"
    );
    // Basic auth is ignored over plain HTTP: the request is anonymous.
    let r = reqwest::Client::new()
        .get(&url)
        .basic_auth(CK, Some(CS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "woocommerce_rest_cannot_view");
    sim.shutdown().await;
}

/// The official JavaScript client (`@woocommerce/woocommerce-rest-api`) puts the
/// query parameters into the URL it signs, then hands them to its HTTP library
/// again, which appends them a second time: each query parameter arrives twice
/// and is signed once. WooCommerce reads `$_GET`, where a repeated name counts
/// once, so the shop accepts it.
#[tokio::test]
async fn oauth_with_query_parameters_sent_twice_as_the_official_client_does() {
    let sim = sim_with(Config::default()).await;
    let items: Vec<(String, i64)> = (0..15).map(|i| (format!("P{i}"), 1)).collect();
    sim.add_listings(&items);
    let url = format!("{}/wp-json/wc/v3/products", sim.base_url);
    let query = [
        ("per_page".to_string(), "10".to_string()),
        ("page".into(), "2".into()),
    ];
    let mut signed = query.to_vec();
    signed.extend(oauth_params(
        &nonce(),
        "HMAC-SHA256",
        chrono::Utc::now().timestamp(),
    ));
    let sig = sign_sha256("GET", &url, &signed, CS);
    signed.push(("oauth_signature".into(), sig));
    // per_page and page again, after the signed set: what reaches the server.
    let full = format!("{url}?{}&{}", query_string(&query), query_string(&signed));
    let r = reqwest::get(&full).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 5, "page 2 of 15 by 10");
    // A repeated parameter whose last value differs is read as the last value,
    // so a signature over the first one fails, as on a real shop.
    let mut signed = query.to_vec();
    signed.extend(oauth_params(
        &nonce(),
        "HMAC-SHA256",
        chrono::Utc::now().timestamp(),
    ));
    let sig = sign_sha256("GET", &url, &signed, CS);
    signed.push(("oauth_signature".into(), sig));
    let full = format!("{url}?{}&per_page=5", query_string(&signed));
    let r = reqwest::get(&full).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn basic_and_query_auth_when_tls_terminated() {
    let sim = sim_with(Config {
        https_terminated: true,
        ..Config::default()
    })
    .await;
    let url = format!("{}/wp-json/wc/v3/products", sim.base_url);
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(&url)
            .basic_auth(CK, Some(CS))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        c.get(format!("{url}?consumer_key={CK}&consumer_secret={CS}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let r = c
        .get(&url)
        .basic_auth(CK, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic realm=\"WooCommerce API."));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Consumer secret is invalid.");
    sim.shutdown().await;
}

#[tokio::test]
async fn read_only_key_cannot_write() {
    let sim = sim_with(Config {
        key_permissions: "read".into(),
        ..Config::default()
    })
    .await;
    let ls = sim.add_listings(&[("A".into(), 1)]);
    let id = ls[0].external["product_id"].as_u64().unwrap();
    let (s, v, _) = call(
        &sim,
        "PUT",
        &format!("/products/{id}"),
        &[],
        Some(json!({"stock_quantity": 3})),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        v["message"],
        "The API key provided does not have write permissions."
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn stock_write_rules_and_variation_routing() {
    let sim = sim_with(Config::default()).await;
    let simple = sim.add_listings(&[("S".into(), 4)]);
    let vars = sim.add_listings_detailed(&[
        NewListing {
            sku: "V1".into(),
            quantity: 2,
            variation: true,
        },
        NewListing {
            sku: "V2".into(),
            quantity: 0,
            variation: true,
        },
    ]);
    let sid = simple[0].external["product_id"].as_u64().unwrap();
    let pid = vars[0].external["product_id"].as_u64().unwrap();
    let v1 = vars[0].external["variation_id"].as_u64().unwrap();
    assert_eq!(vars[1].external["product_id"].as_u64().unwrap(), pid);
    assert_eq!(vars[1].availability, "out_of_stock");
    // Variation id on /products/{id}.
    let (s, v, _) = call(&sim, "GET", &format!("/products/{v1}"), &[], None).await;
    assert_eq!(s, 404);
    assert_eq!(v["code"], "woocommerce_rest_invalid_product_id");
    // inventory_delta when stock_quantity is absent.
    let (_, v, _) = call(
        &sim,
        "PUT",
        &format!("/products/{sid}"),
        &[],
        Some(json!({"inventory_delta": -3})),
    )
    .await;
    assert_eq!(v["stock_quantity"], 1);
    let (_, v, _) = call(
        &sim,
        "PUT",
        &format!("/products/{sid}"),
        &[],
        Some(json!({"stock_quantity": 0})),
    )
    .await;
    assert_eq!(v["stock_status"], "outofstock");
    let (_, v, _) = call(
        &sim,
        "PUT",
        &format!("/products/{sid}"),
        &[],
        Some(json!({"backorders": "notify"})),
    )
    .await;
    assert_eq!(v["stock_status"], "onbackorder");
    let (_, v, _) = call(
        &sim,
        "PUT",
        &format!("/products/{sid}"),
        &[],
        Some(json!({"manage_stock": false, "stock_quantity": 9})),
    )
    .await;
    assert!(v["stock_quantity"].is_null(), "{v}");
    // Parent status follows the children.
    let (_, v, _) = call(
        &sim,
        "PUT",
        &format!("/products/{pid}/variations/{v1}"),
        &[],
        Some(json!({"stock_quantity": 0})),
    )
    .await;
    assert_eq!(v["stock_status"], "outofstock");
    let (_, v, _) = call(&sim, "GET", &format!("/products/{pid}"), &[], None).await;
    assert_eq!(v["stock_status"], "outofstock");
    assert_eq!(v["type"], "variable");
    let (s, v, _) = call(
        &sim,
        "GET",
        &format!("/products/{pid}/variations"),
        &[],
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn batch_limit_and_per_item_errors() {
    let sim = sim_with(Config::default()).await;
    let ls = sim.add_listings(&[("A".into(), 1), ("B".into(), 1)]);
    let vars = sim.add_listings_detailed(&[NewListing {
        sku: "V".into(),
        quantity: 1,
        variation: true,
    }]);
    let a = ls[0].external["product_id"].as_u64().unwrap();
    let b = ls[1].external["product_id"].as_u64().unwrap();
    let vid = vars[0].external["variation_id"].as_u64().unwrap();
    let pid = vars[0].external["product_id"].as_u64().unwrap();
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"id": i, "stock_quantity": 1}))
        .collect();
    let (s, v, _) = call(
        &sim,
        "POST",
        "/products/batch",
        &[],
        Some(json!({"update": too_many})),
    )
    .await;
    assert_eq!(s, 413);
    assert_eq!(v["code"], "woocommerce_rest_request_entity_too_large");
    assert_eq!(
        v["message"],
        "Unable to accept more than 100 items for this request."
    );
    sim.set_faults(Faults {
        reject_skus: vec!["B".into()],
        ..Faults::default()
    });
    let (s, v, _) = call(&sim, "POST", "/products/batch", &[], Some(json!({"update": [
        {"id": a, "stock_quantity": 7}, {"id": b, "stock_quantity": 7}, {"id": 999999, "stock_quantity": 7}, {"id": vid, "stock_quantity": 7}
    ]}))).await;
    assert_eq!(s, 200);
    let up = v["update"].as_array().unwrap();
    assert_eq!(up[0]["stock_quantity"], 7);
    assert_eq!(up[1]["id"], b);
    assert!(up[1]["error"]["code"].is_string());
    assert_eq!(
        up[2]["error"]["code"],
        "woocommerce_rest_product_invalid_id"
    );
    assert_eq!(
        up[3]["error"]["code"],
        "woocommerce_rest_invalid_product_id"
    );
    assert_eq!(up[3]["error"]["data"]["status"], 404);
    let (_, v, _) = call(
        &sim,
        "POST",
        &format!("/products/{pid}/variations/batch"),
        &[],
        Some(json!({"update": [{"id": vid, "stock_quantity": 5}]})),
    )
    .await;
    assert_eq!(v["update"][0]["stock_quantity"], 5, "{v}");
    let (_, v, _) = call(
        &sim,
        "POST",
        "/products/batch",
        &[],
        Some(json!({"create": [{"name": "dup", "sku": "A"}]})),
    )
    .await;
    assert_eq!(v["create"][0]["id"], 0);
    assert_eq!(v["create"][0]["error"]["code"], "product_invalid_sku");
    let l = sim.listings();
    assert_eq!(l.iter().find(|x| x.sku == "A").unwrap().quantity, 7);
    assert_eq!(l.iter().find(|x| x.sku == "B").unwrap().quantity, 1);
    assert_eq!(l.iter().find(|x| x.sku == "V").unwrap().quantity, 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn pagination_headers() {
    let sim = sim_with(Config::default()).await;
    let items: Vec<(String, i64)> = (0..25).map(|i| (format!("P{i}"), 1)).collect();
    sim.add_listings(&items);
    let (_, v, h) = call(
        &sim,
        "GET",
        "/products",
        &[("per_page", "10"), ("page", "2")],
        None,
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 10);
    assert_eq!(h["x-wp-total"], "25");
    assert_eq!(h["x-wp-totalpages"], "3");
    // WooCommerce sends `prev` and `next` only, each the request's own query
    // with `page` replaced.
    let link = h["link"].to_str().unwrap();
    assert!(link.contains("per_page=10&page=3"), "{link}");
    assert!(link.contains("page=3"), "{link}");
    assert!(link.contains("rel=\"next\""), "{link}");
    assert!(link.contains("per_page=10&page=1"), "{link}");
    assert!(link.contains("rel=\"prev\""), "{link}");
    assert!(
        !link.contains("rel=\"first\"") && !link.contains("rel=\"last\""),
        "{link}"
    );
    let (_, v, _) = call(
        &sim,
        "GET",
        "/products",
        &[("per_page", "10"), ("page", "3")],
        None,
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 5);
    let (s, _, _) = call(&sim, "GET", "/products", &[("per_page", "101")], None).await;
    assert_eq!(s, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn include_lists_only_those_ids_and_a_back_office_edit_shows() {
    let sim = sim_with(Config::default()).await;
    let items: Vec<(String, i64)> = (0..25).map(|i| (format!("I{i}"), 1)).collect();
    let listed = sim.add_listings(&items);
    let id = |i: usize| listed[i].external["product_id"].to_string();
    let include = format!("{},{}", id(3), id(7));
    let (_, v, h) = call(
        &sim,
        "GET",
        "/products",
        &[("include", &include), ("per_page", "100")],
        None,
    )
    .await;
    let skus: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus.len(), 2, "{skus:?}");
    assert!(skus.contains(&"I3") && skus.contains(&"I7"), "{skus:?}");
    assert_eq!(h["x-wp-total"], "2");
    assert_eq!(h["x-wp-totalpages"], "1");
    // The merchant sets I3 to 0 in wp-admin: the API shows it, no webhook.
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/listings/I3/quantity", sim.base_url))
        .json(&json!({"quantity": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, v, _) = call(&sim, "GET", &format!("/products/{}", id(3)), &[], None).await;
    assert_eq!(v["stock_quantity"], 0);
    assert_eq!(v["stock_status"], "outofstock");
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/listings/NOPE/quantity", sim.base_url))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/listings/I3/quantity", sim.base_url))
        .json(&json!({"quantity": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn orders_reduce_stock_and_send_signed_webhooks() {
    let (url, sink) = receiver().await;
    let sim = sim_with(Config {
        webhook_url: Some(url),
        webhook_secret: "wc-secret".into(),
        ..Config::default()
    })
    .await;
    sim.add_listings(&[("TS/RED".into(), 2)]);
    let vars = sim.add_listings_detailed(&[NewListing {
        sku: "V".into(),
        quantity: 1,
        variation: true,
    }]);
    assert_eq!(
        sim.buy(&[("TS/RED".into(), 3)]).await,
        Err(stockd_sim::SimError::NotAvailable)
    );
    let id = sim
        .buy(&[("TS/RED".into(), 2), ("V".into(), 1)])
        .await
        .unwrap();
    let l = sim.listings();
    assert_eq!(
        l.iter().find(|x| x.sku == "TS/RED").unwrap().availability,
        "out_of_stock"
    );
    sim.cancel_order(&id).await.unwrap();
    assert_eq!(
        sim.listings()
            .iter()
            .find(|x| x.sku == "TS/RED")
            .unwrap()
            .quantity,
        2
    );
    let got = sink.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("x-wc-webhook-topic"), "order.created");
    assert_eq!(got[1].header("x-wc-webhook-topic"), "order.updated");
    for r in &got {
        assert_eq!(
            r.header("x-wc-webhook-signature"),
            stockd_sim::hmac_sha256_base64(b"wc-secret", &r.body)
        );
        assert_eq!(r.header("x-wc-webhook-resource"), "order");
        assert!(r.header("x-wc-webhook-source").ends_with('/'));
        assert!(!r.header("x-wc-webhook-delivery-id").is_empty());
        assert_eq!(r.header("x-wc-webhook-id"), "1");
    }
    let raw = String::from_utf8(got[0].body.clone()).unwrap();
    assert!(raw.contains(r#""sku":"TS\/RED""#), "{raw}");
    let order = got[0].json();
    assert_eq!(order["id"].as_u64().unwrap().to_string(), id);
    assert_eq!(order["status"], "processing");
    let lines = order["line_items"].as_array().unwrap();
    assert_eq!(lines[0]["variation_id"], 0);
    assert_eq!(lines[1]["variation_id"], vars[0].external["variation_id"]);
    assert_eq!(lines[1]["product_id"], vars[0].external["product_id"]);
    assert_eq!(got[1].json()["status"], "cancelled");
    sim.shutdown().await;
}

#[tokio::test]
async fn webhook_disabled_after_repeated_failures() {
    let (url, sink) = receiver().await;
    sink.script.lock().unwrap().extend([500; 20]);
    let sim = sim_with(Config {
        webhook_url: Some(url),
        webhook_topics: vec!["order.created".into()],
        ..Config::default()
    })
    .await;
    sim.add_listings(&[("A".into(), 100)]);
    for _ in 0..9 {
        sim.buy(&[("A".into(), 1)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No retries; disabled at the 7th consecutive failure, so nothing after it is sent.
    assert_eq!(sink.all().len(), 7);
    assert_eq!(sim.stats().webhooks_failed, 7);
    sim.shutdown().await;
}

#[tokio::test]
async fn host_rate_limit_and_injected_storm() {
    let sim = sim_with(Config {
        rate_limit: Some((2.0, 0.5)),
        ..Config::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(call(&sim, "GET", "/products", &[], None).await.0, 200);
    }
    let (s, _, h) = call(&sim, "GET", "/products", &[], None).await;
    assert_eq!(s, 429);
    assert_eq!(h["retry-after"], "2");
    assert_eq!(sim.stats().rate_limit_violations, 1);
    sim.shutdown().await;

    let sim = sim_with(Config::default()).await;
    sim.set_faults(Faults {
        throttle_storm_secs: 5.0,
        retry_after_secs: Some(3.0),
        ..Faults::default()
    });
    let (s, _, h) = call(&sim, "GET", "/products", &[], None).await;
    assert_eq!((s, h["retry-after"].to_str().unwrap()), (429, "3"));
    sim.set_faults(Faults {
        outage_secs: 5.0,
        ..Faults::default()
    });
    assert_eq!(call(&sim, "GET", "/products", &[], None).await.0, 503);
    let st = sim.stats();
    assert_eq!((st.injected_faults, st.rate_limit_violations), (2, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn refunds_with_line_quantities_restock_and_fire_order_updated() {
    let (url, sink) = receiver().await;
    let sim = sim_with(Config {
        webhook_url: Some(url),
        ..Config::default()
    })
    .await;
    sim.add_listings(&[("R1".into(), 5)]);
    let id = sim.buy(&[("R1".into(), 3)]).await.unwrap();
    let (_, order, _) = call(&sim, "GET", &format!("/orders/{id}"), &[], None).await;
    let line = order["line_items"][0]["id"].as_u64().unwrap();
    // 1 unit without restock, then 2 with restock (the default).
    let path = format!("/orders/{id}/refunds");
    let (status, first, _) = call(
        &sim,
        "POST",
        &path,
        &[],
        Some(json!({"line_items": [{"id": line, "quantity": 1}], "api_restock": false})),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["line_items"][0]["quantity"], -1);
    assert_eq!(
        first["line_items"][0]["meta_data"][0],
        json!({"id": first["line_items"][0]["meta_data"][0]["id"], "key": "_refunded_item_id", "value": line.to_string()})
    );
    let qty = |sim: &RunningSim| sim.listings()[0].quantity;
    assert_eq!(qty(&sim), 2);
    let (status, _, _) = call(
        &sim,
        "POST",
        &path,
        &[],
        Some(json!({"line_items": [{"id": line, "quantity": 2}]})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(qty(&sim), 4);
    // More than is left to refund is refused and changes nothing.
    let (status, refused, _) = call(
        &sim,
        "POST",
        &path,
        &[],
        Some(json!({"line_items": [{"id": line, "quantity": 1}]})),
    )
    .await;
    assert_eq!(status, 500, "{refused}");
    assert_eq!(
        refused["code"],
        "woocommerce_rest_cannot_create_order_refund"
    );
    let (status, list, headers) = call(&sim, "GET", &path, &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-wp-total"], "2");
    assert_eq!(list[0]["line_items"][0]["quantity"], -2, "newest first");
    let one = list[1]["id"].as_u64().unwrap();
    let (status, got, _) = call(&sim, "GET", &format!("{path}/{one}"), &[], None).await;
    assert_eq!((status, got["id"].as_u64()), (200, Some(one)));
    // order.created, then one order.updated per refund naming them by id;
    // the fully refunded order is `refunded`, its line carries the
    // restocked units.
    let got = sink.wait_for(3).await;
    let last = got[2].json();
    assert_eq!(got[2].header("x-wc-webhook-topic"), "order.updated");
    assert_eq!(last["status"], "refunded");
    assert_eq!(last["refunds"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        last["line_items"][0]["meta_data"][0]["key"],
        "_restock_refunded_items"
    );
    assert_eq!(last["line_items"][0]["meta_data"][0]["value"], "2");
    assert_eq!(got[1].json()["status"], "processing");
    sim.shutdown().await;
}

/// A path or method WooCommerce does not serve answers WordPress's `rest_no_route`; under
/// `/wp-json/wc/v3` authentication still comes first, so an anonymous call gets the
/// permission error instead.
#[tokio::test]
async fn unknown_paths_and_methods_answer_rest_no_route_after_authentication() {
    let sim = sim_with(Config::default()).await;
    let sid = sim.add_listings(&[("S".into(), 4)])[0].external["product_id"]
        .as_u64()
        .unwrap();
    let no_route = |s: u16, v: &Value| {
        assert_eq!(s, 404, "{v}");
        assert_eq!(v["code"], "rest_no_route", "{v}");
        assert_eq!(
            v["message"],
            "No route was found matching the URL and request method."
        );
        assert_eq!(v["data"]["status"], 404);
    };
    for (method, path) in [
        ("DELETE", format!("/products/{sid}")),
        ("POST", "/products".to_string()),
        ("DELETE", "/products/batch".to_string()),
        ("GET", format!("/products/{sid}/variations/1/extra")),
        ("PUT", "/orders/1/refunds".to_string()),
        ("DELETE", "/orders/1/refunds/2".to_string()),
        ("GET", "/nothing".to_string()),
    ] {
        let (s, v, _) = call(&sim, method, &path, &[], None).await;
        no_route(s, &v);
    }
    for index in ["", "/"] {
        let (s, v, _) = call(&sim, "GET", index, &[], None).await;
        assert_eq!((s, &v["namespace"]), (200, &json!("wc/v3")), "{v}");
    }
    let anonymous = |method: &str, path: &str| {
        reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", sim.base_url))
            .send()
    };
    let r = anonymous("GET", "/wp-json/wc/v3/nothing").await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "woocommerce_rest_cannot_view");
    let r = anonymous("DELETE", &format!("/wp-json/wc/v3/products/{sid}"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "woocommerce_rest_cannot_delete");
    // Outside the API there is no authentication.
    let r = anonymous("GET", "/wp-json/wc/v2/products").await.unwrap();
    let s = r.status().as_u16();
    no_route(s, &r.json().await.unwrap());
    sim.shutdown().await;
}
