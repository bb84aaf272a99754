//! Bearer tokens and roles (read < ingest < admin), and the rule that an
//! unauthenticated server only starts on a loopback address.

use crate::helpers::{config, receipt, sqlite_url, token, TestApp};
use serde_json::json;
use std::net::SocketAddr;
use stockd::auth::Role;

const READ: &str = "read-secret";
const INGEST: &str = "ingest-secret";
const ADMIN: &str = "admin-secret";

#[tokio::test]
async fn roles_gate_the_endpoints() {
    let mut app = TestApp::sqlite_with(|config| {
        config.tokens = vec![
            token("dashboard", Role::Read, READ),
            token("erp", Role::Ingest, INGEST),
            token("ops", Role::Admin, ADMIN),
        ];
    })
    .await;
    let location = json!({"name": "Amsterdam"}).to_string().into_bytes();
    let variant = json!({"title": "Tee"}).to_string().into_bytes();
    let variants = json!([{"sku": "B"}]).to_string().into_bytes();
    let event = receipt("r1", "A", "AMS", 1).to_string().into_bytes();
    // (method, path, body, the weakest token that may, its expected status)
    type Case<'a> = (&'a str, &'a str, Option<&'a Vec<u8>>, Option<&'a str>, u16);
    let table: Vec<Case> = vec![
        ("GET", "/healthz", None, None, 200),
        ("GET", "/readyz", None, None, 200),
        ("GET", "/metrics", None, None, 200),
        ("GET", "/openapi.json", None, Some(READ), 200),
        (
            "PUT",
            "/v1/locations/AMS",
            Some(&location),
            Some(ADMIN),
            200,
        ),
        ("GET", "/v1/locations", None, Some(READ), 200),
        ("PUT", "/v1/variants/A", Some(&variant), Some(INGEST), 200),
        ("POST", "/v1/variants", Some(&variants), Some(INGEST), 200),
        ("GET", "/v1/variants/A", None, Some(READ), 200),
        ("POST", "/v1/events", Some(&event), Some(INGEST), 200),
        ("GET", "/v1/stock/A", None, Some(READ), 200),
        ("GET", "/v1/stock", None, Some(READ), 200),
        ("GET", "/v1/ledger", None, Some(READ), 200),
        ("GET", "/v1/quarantine", None, Some(READ), 200),
        ("DELETE", "/v1/quarantine/999", None, Some(ADMIN), 404),
    ];
    let weaker = |secret: &str| match secret {
        ADMIN => Some(INGEST),
        INGEST => Some(READ),
        _ => None,
    };
    for (method, path, body, needed, status) in table {
        let body = body.map(|b| ("application/json", b.clone()));
        let what = format!("{method} {path}");
        let Some(needed) = needed else {
            app.token = None;
            let reply = app.send(method, path, body.clone()).await;
            assert_eq!(reply.status, status, "{what} is open: {}", reply.text);
            continue;
        };
        for (secret, expect_status, expect_code) in [
            (None, 401, "unauthorized"),
            (Some("wrong-secret"), 401, "unauthorized"),
        ] {
            app.token = secret.map(str::to_string);
            let reply = app.send(method, path, body.clone()).await;
            assert_eq!(
                (reply.status, reply.code()),
                (expect_status, expect_code),
                "{what}"
            );
            assert_eq!(
                reply
                    .headers
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer"),
                "{what}"
            );
        }
        if let Some(weaker) = weaker(needed) {
            app.token = Some(weaker.to_string());
            let reply = app.send(method, path, body.clone()).await;
            assert_eq!(
                (reply.status, reply.code()),
                (403, "forbidden"),
                "{what} with {weaker}"
            );
        }
        app.token = Some(needed.to_string());
        let reply = app.send(method, path, body.clone()).await;
        assert_eq!(reply.status, status, "{what} with {needed}: {}", reply.text);
        // Stronger roles include the weaker ones.
        app.token = Some(ADMIN.to_string());
        let reply = app.send(method, path, body).await;
        assert_eq!(reply.status, status, "{what} with admin: {}", reply.text);
    }
    app.stop().await;
}

#[tokio::test]
async fn without_tokens_only_loopback_may_listen() {
    let dir = tempfile::tempdir().unwrap();
    let mut public = config(sqlite_url(&dir));
    public.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let refused = stockd::spawn(public).await.err().expect("refuses to start");
    assert!(
        matches!(refused, stockd::StartError::OpenOnPublicAddress(_)),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("without API tokens"),
        "{refused}"
    );

    // On loopback it runs open.
    let app = TestApp::start(config(sqlite_url(&dir)), dir).await;
    app.put("/v1/locations/AMS", json!({"name": "A"}))
        .await
        .expect(200);
    app.stop().await;
}
