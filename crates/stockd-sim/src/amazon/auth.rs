//! Login with Amazon: the refresh-token grant at `POST /auth/o2/token`
//! (<https://developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api>).

use super::*;

pub(super) async fn token_handler(State(sim): State<Sim>, body: Bytes) -> Response {
    Counters::add(&sim.core.counters.requests, 1);
    let text = String::from_utf8_lossy(&body);
    let form = Query(parse_form_urlencoded(&text));
    // OAuth 2 error shapes (RFC 6749); LWA's exact descriptions are UNCONFIRMED.
    let oauth = |status: StatusCode, code: &str, desc: &str| {
        json_response(status, &json!({"error": code, "error_description": desc}))
    };
    let grant = form.one("grant_type").unwrap_or("");
    if grant.is_empty() {
        return oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request is missing a required parameter : grant_type",
        );
    }
    if grant != "refresh_token" {
        return oauth(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server",
        );
    }
    if form.one("client_id") != Some(sim.config.client_id.as_str())
        || form.one("client_secret") != Some(sim.config.client_secret.as_str())
    {
        return oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    match form.one("refresh_token") {
        None | Some("") => {
            return oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request is missing a required parameter : refresh_token",
            )
        }
        Some(t) if t != sim.config.refresh_token => {
            return oauth(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The request has an invalid grant parameter : refresh_token",
            )
        }
        Some(_) => {}
    }
    let token = format!("Atza|sim-{}", sim.core.uuid());
    {
        let mut st = lock(&sim.state);
        let exp = Instant::now() + Duration::from_secs(sim.config.token_ttl_secs);
        st.tokens.retain(|_, e| *e > Instant::now());
        st.tokens.insert(token.clone(), exp);
        st.tokens_issued += 1;
    }
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "refresh_token": sim.config.refresh_token,
            "token_type": "bearer",
            "expires_in": sim.config.token_ttl_secs,
        }),
    )
}
