//! End-to-end tests of the channel simulators over HTTP.

mod common_support {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::Router;

    #[derive(Clone, Debug)]
    pub struct Received {
        pub headers: HeaderMap,
        pub body: Vec<u8>,
    }

    impl Received {
        pub fn header(&self, name: &str) -> String {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        }
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("json body")
        }
    }

    #[derive(Clone, Default)]
    pub struct Sink {
        pub got: Arc<Mutex<Vec<Received>>>,
        /// Statuses to answer, in order; 200 once exhausted.
        pub script: Arc<Mutex<Vec<u16>>>,
    }

    impl Sink {
        pub fn all(&self) -> Vec<Received> {
            self.got.lock().unwrap().clone()
        }
        pub async fn wait_for(&self, n: usize) -> Vec<Received> {
            for _ in 0..200 {
                if self.got.lock().unwrap().len() >= n {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            self.all()
        }
    }

    async fn hook(
        State(s): State<Sink>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        s.got.lock().unwrap().push(Received {
            headers,
            body: body.to_vec(),
        });
        let mut script = s.script.lock().unwrap();
        let code = if script.is_empty() {
            200
        } else {
            script.remove(0)
        };
        StatusCode::from_u16(code).unwrap()
    }

    /// A webhook receiver on a free port; returns (url, sink).
    pub async fn receiver() -> (String, Sink) {
        let sink = Sink::default();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(sink.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        (format!("http://{addr}/hook"), sink)
    }

    pub fn any_addr() -> std::net::SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }
}

mod hmac_vectors {
    use stockd_sim::hmac_sha256_base64;

    #[test]
    fn note_section_1_8_vectors() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "test-webhook-secret",
                r#"{"id":1234567890,"email":"customer@example.com","total_price":"123.45"}"#,
                "QNyObTlKbMx2qDlPF/ZOZcBqg5OgPg+2oky3zldc0Gw=",
            ),
            (
                "Jefe",
                "what do ya want for nothing?",
                "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
            ),
            (
                "shpss_test_secret",
                r#"{"id":820982911946154508,"line_items":[{"id":1,"variant_id":457924702,"sku":"IPOD2008BLACK","quantity":2}]}"#,
                "KmKU/87boTtemDgvftNR1LGqVXRPoJQqaut84vxRz9E=",
            ),
            (
                "wc_secret",
                r#"{"id":727,"status":"processing","line_items":[{"id":315,"product_id":22,"variation_id":23,"sku":"Bar3","quantity":1}]}"#,
                "3je8afDjvvXtMdP/QdRy2Wrm/yMM2XWdlr0ishOWuY0=",
            ),
            ("", "{}", "IvjuqQlACvmK3zaBqfMZI+9rf8ukq7VT2Sgjo+nVwl4="),
        ];
        for (secret, body, want) in cases {
            assert_eq!(
                hmac_sha256_base64(secret.as_bytes(), body.as_bytes()),
                *want,
                "secret {secret}"
            );
        }
    }

    #[test]
    fn php_escaping() {
        let v = serde_json::json!({"a": "x/y", "b": "é"});
        assert_eq!(
            stockd_sim::php_json_encode(&v),
            r#"{"a":"x\/y","b":"\u00e9"}"#
        );
    }
}

#[path = "sim/amazon.rs"]
mod amazon;
#[path = "sim/bol.rs"]
mod bol;
#[path = "sim/bulk_read.rs"]
mod bulk_read;
#[path = "sim/gmc.rs"]
mod gmc;
#[path = "sim/shopify.rs"]
mod shopify;
#[path = "sim/woocommerce.rs"]
mod woocommerce;

mod operator {
    use serde_json::{json, Value};

    use crate::common_support::any_addr;

    #[tokio::test]
    async fn sim_endpoints_have_the_same_shape_on_every_channel() {
        let shop = stockd_sim::shopify::start(Default::default(), any_addr())
            .await
            .unwrap();
        let woo = stockd_sim::woocommerce::start(Default::default(), any_addr())
            .await
            .unwrap();
        let c = reqwest::Client::new();
        for (sim, keys) in [
            (
                &shop,
                vec!["inventory_item_id", "location_id", "variant_id"],
            ),
            (&woo, vec!["product_id"]),
        ] {
            let r = c
                .post(format!("{}/_sim/listings", sim.base_url))
                .json(&json!([{"sku": "X-1", "quantity": 2}]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            let created: Value = r.json().await.unwrap();
            assert_eq!(created[0]["sku"], "X-1");
            let ext = created[0]["external"].as_object().unwrap();
            let mut got: Vec<&str> = ext.keys().map(String::as_str).collect();
            got.sort();
            assert_eq!(got, keys);
            let listed: Value = c
                .get(format!("{}/_sim/listings", sim.base_url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(listed, created);
            let r = c
                .post(format!("{}/_sim/orders", sim.base_url))
                .json(&json!({"sku": "X-1", "qty": 3}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 409);
            assert_eq!(r.json::<Value>().await.unwrap()["error"], "not_available");
            let r = c
                .post(format!("{}/_sim/orders", sim.base_url))
                .json(&json!({"lines": [{"sku": "X-1", "qty": 2}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            let id = r.json::<Value>().await.unwrap()["order_id"]
                .as_str()
                .unwrap()
                .to_string();
            let listed: Value = c
                .get(format!("{}/_sim/listings", sim.base_url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(listed[0]["quantity"], 0);
            assert_eq!(listed[0]["availability"], "out_of_stock");
            let r = c
                .post(format!("{}/_sim/orders/{id}/cancel", sim.base_url))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            assert_eq!(sim.listings()[0].quantity, 2);
            let r = c
                .post(format!("{}/_sim/faults", sim.base_url))
                .json(&json!({"error_5xx_rate": 1.0}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            let r = c
                .post(format!("{}/_sim/faults", sim.base_url))
                .json(&json!({"no_such_fault": 1}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 400);
            let r = c
                .delete(format!("{}/_sim/faults", sim.base_url))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 204);
            let stats: Value = c
                .get(format!("{}/_sim/stats", sim.base_url))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for k in [
                "requests",
                "rate_limit_violations",
                "injected_faults",
                "updates_applied",
                "webhooks_sent",
                "webhooks_failed",
            ] {
                assert!(stats[k].is_u64(), "{k}");
            }
            assert_eq!(stats["requests"], 0);
        }
        shop.shutdown().await;
        woo.shutdown().await;
    }

    #[tokio::test]
    async fn error_rate_fault_gives_5xx() {
        let shop = stockd_sim::shopify::start(Default::default(), any_addr())
            .await
            .unwrap();
        shop.set_faults(stockd_sim::Faults {
            error_5xx_rate: 1.0,
            ..Default::default()
        });
        let r = reqwest::Client::new()
            .post(format!("{}/admin/api/2026-01/graphql.json", shop.base_url))
            .json(&json!({"query": "{ locations(first: 1) { nodes { id } } }"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_server_error());
        assert_eq!(shop.stats().injected_faults, 1);
        shop.shutdown().await;
    }
}

mod binary {
    #[test]
    fn help_lists_both_channels() {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stockd-sim"))
            .arg("--help")
            .output()
            .expect("run");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("shopify") && text.contains("woocommerce"),
            "{text}"
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stockd-sim"))
            .args(["shopify", "--help"])
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("--webhook-url")
                && text.contains("--access-token")
                && text.contains("--seed"),
            "{text}"
        );
    }
}
