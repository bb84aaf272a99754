//! HTTP-level errors are JSON with stable codes: wrong content type, body too
//! large, unknown route, wrong method, bad query or path.

use crate::helpers::{receipt, TestApp};
use serde_json::Value;

#[tokio::test]
async fn transport_errors_are_json_with_stable_codes() {
    let app = TestApp::sqlite().await;
    let body = receipt("r1", "A", "L", 1).to_string().into_bytes();
    for (method, path, content_type, status, code) in [
        (
            "POST",
            "/v1/events",
            Some("text/plain"),
            415,
            "unsupported_media_type",
        ),
        ("POST", "/v1/events", None, 415, "unsupported_media_type"),
        (
            "PUT",
            "/v1/variants/A",
            Some("application/x-www-form-urlencoded"),
            415,
            "unsupported_media_type",
        ),
        ("GET", "/v1/nothing", None, 404, "not_found"),
        ("GET", "/no-such-page", None, 404, "not_found"),
        ("DELETE", "/v1/events", None, 405, "method_not_allowed"),
        ("PATCH", "/v1/stock/A", None, 405, "method_not_allowed"),
        ("GET", "/v1/ledger?limit=-3", None, 400, "invalid_query"),
        (
            "GET",
            "/v1/quarantine?after_id=x",
            None,
            400,
            "invalid_query",
        ),
    ] {
        let reply = match content_type {
            Some(ct) => app.send(method, path, Some((ct, body.clone()))).await,
            None => app.send(method, path, None).await,
        };
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{method} {path}: {}",
            reply.text
        );
    }
    let reply = app.send("DELETE", "/v1/events", None).await;
    assert_eq!(
        reply.headers.get("allow").map(|v| v.to_str().unwrap()),
        Some("POST")
    );
    // A content type with parameters is still JSON.
    app.send(
        "PUT",
        "/v1/locations/AMS",
        Some((
            "application/json; charset=utf-8",
            br#"{"name": "A"}"#.to_vec(),
        )),
    )
    .await
    .expect(200);
    app.stop().await;
}

#[tokio::test]
async fn bodies_are_size_limited() {
    let app = TestApp::sqlite_with(|config| {
        config.http.body_limit_bytes = 1024;
        config.http.events_body_limit_bytes = 16 * 1024;
    })
    .await;
    app.location("AMS", true, 1).await;
    app.variants(&["A"]).await;
    let events = |n: usize| {
        Value::Array(
            (0..n)
                .map(|i| receipt(&format!("key-{i:05}"), "A", "AMS", 1))
                .collect(),
        )
    };
    // ~70 bytes an event: 100 fit in 16 KiB (more than the 1 KiB elsewhere), 1,000 do not.
    let results = app.events(events(100)).await;
    assert_eq!(results.len(), 100);
    app.post("/v1/events", events(1_000))
        .await
        .expect_error(413, "payload_too_large");
    let big_title = "x".repeat(2_000);
    app.put("/v1/variants/A", serde_json::json!({ "title": big_title }))
        .await
        .expect_error(413, "payload_too_large");
    assert_eq!(app.stock("A").await["on_hand"], 100);
    app.stop().await;
}
