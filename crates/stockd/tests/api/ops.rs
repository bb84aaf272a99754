//! Operations endpoints: health, readiness, Prometheus metrics, OpenAPI.

use crate::helpers::{receipt, TestApp};
use serde_json::json;

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::sqlite().await;
    assert_eq!(
        app.get("/healthz").await.expect(200).body,
        json!({"status": "ok"})
    );
    // Ready at once; the start-up recompute of desired channel states
    // reports `running` until it is over (an empty catalog: at once).
    let mut body = app.get("/readyz").await.expect(200).body;
    for _ in 0..200 {
        assert_eq!(body["status"], "ready");
        assert!(body["recompute"] == "running" || body["recompute"] == "done");
        if body["recompute"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        body = app.get("/readyz").await.expect(200).body;
    }
    assert_eq!(body, json!({"status": "ready", "recompute": "done"}));
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_events_and_latency() {
    let app = TestApp::sqlite().await;
    app.location("AMS", true, 1).await;
    app.variants(&["A"]).await;
    app.events(json!([
        receipt("r1", "A", "AMS", 1),
        receipt("q1", "UNKNOWN", "AMS", 1)
    ]))
    .await;
    app.events(receipt("r1", "A", "AMS", 1)).await;
    app.post("/v1/events", receipt("r1", "A", "AMS", 2))
        .await
        .expect(409);
    app.get("/v1/stock/A").await.expect(200);
    app.get("/v1/nowhere").await.expect(404);

    let reply = app.get("/metrics").await.expect(200);
    let content_type = reply.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for line in [
        r#"stockd_http_requests_total{method="POST",route="/v1/events",status="200"} 2"#,
        r#"stockd_http_requests_total{method="POST",route="/v1/events",status="409"} 1"#,
        r#"stockd_http_requests_total{method="GET",route="/v1/stock/{sku}",status="200"} 1"#,
        r#"stockd_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"stockd_events_total{status="applied"} 1"#,
        r#"stockd_events_total{status="duplicate"} 1"#,
        r#"stockd_events_total{status="quarantined"} 1"#,
        r#"stockd_event_requests_refused_total{code="idempotency_key_reused"} 1"#,
        r#"stockd_http_request_duration_seconds_count{route="/v1/events"} 3"#,
        r#"stockd_http_request_duration_seconds_bucket{route="/v1/events",le="+Inf"} 3"#,
        "# TYPE stockd_http_request_duration_seconds histogram",
        r#"stockd_store_info{backend="sqlite"} 1"#,
    ] {
        assert!(
            reply.text.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            reply.text
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn openapi_document_describes_the_api() {
    let app = TestApp::sqlite().await;
    let doc = app.get("/openapi.json").await.expect(200).body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/v1/events", "post"),
        ("/v1/locations/{id}", "put"),
        ("/v1/variants/{sku}", "put"),
        ("/v1/variants", "post"),
        ("/v1/stock/{sku}", "get"),
        ("/v1/stock", "get"),
        ("/v1/ledger", "get"),
        ("/v1/orders/{order_id}", "get"),
        ("/v1/quarantine", "get"),
        ("/v1/quarantine/{id}", "delete"),
        ("/v1/inbound/rejected", "get"),
        ("/v1/inbound/rejected/{id}", "delete"),
        ("/v1/feeds", "get"),
        ("/v1/feeds/{id}/runs", "get"),
        ("/v1/channels", "get"),
        ("/v1/channels/{id}", "put"),
        ("/v1/channels/{id}", "get"),
        ("/v1/channels/{id}/listings", "post"),
        ("/v1/channels/{id}/listings", "get"),
        ("/v1/channels/{id}/unmapped", "get"),
        ("/v1/bundles", "get"),
        ("/v1/bundles/{kit_sku}", "put"),
        ("/v1/bundles/{kit_sku}", "delete"),
        ("/v1/rules", "put"),
        ("/v1/rules", "get"),
        ("/v1/rules/versions", "get"),
        ("/v1/rules/versions/{n}", "get"),
        ("/v1/rules/diff", "get"),
        ("/v1/rules/preview", "post"),
        ("/v1/rules/rollback", "post"),
        ("/readyz", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    let events = &paths["/v1/events"]["post"];
    for status in ["200", "400", "409", "413", "415", "422", "503"] {
        assert!(
            events["responses"][status].is_object(),
            "POST /v1/events lacks {status}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["EventInput"]["properties"]["lines"].is_object());
    assert!(schemas["StockView"]["properties"]["oversold"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    app.stop().await;
}
