//! The OAuth 2.0 token endpoint for the service-account JWT bearer grant, and the JWT checks
//! shared with self-signed JWT access
//! (<https://developers.google.com/identity/protocols/oauth2/service-account>).

use super::*;

pub(super) async fn token_handler(AxState(sim): AxState<Arc<Gmc>>, req: Request) -> Response {
    Counters::add(&sim.core.counters.requests, 1);
    let resp = sim.token(req).await;
    if !resp.status().is_success() {
        Counters::add(&sim.counters.token_rejections, 1);
    }
    resp
}

pub(super) fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Gmc {
    pub(super) async fn token(&self, req: Request) -> Response {
        if req.method() != Method::POST {
            return oauth_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "Token requests must use POST.",
            );
        }
        let Ok(body) = axum::body::to_bytes(req.into_body(), 1 << 20).await else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Body too large.",
            );
        };
        let form = parse_form_urlencoded(&String::from_utf8_lossy(&body));
        match form_get(&form, "grant_type") {
            Some(JWT_GRANT_TYPE) => {}
            Some(other) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    &format!("Invalid grant_type: {other}"),
                )
            }
            None => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: grant_type",
                )
            }
        }
        let Some(assertion) = form_get(&form, "assertion") else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: assertion",
            );
        };
        if let Err((error, description)) = self.verify_jwt(assertion, now_secs()) {
            return oauth_error(StatusCode::BAD_REQUEST, error, &description);
        }
        let token = format!(
            "ya29.sim-{:016x}{:016x}",
            self.core.rand_u64(),
            self.core.rand_u64()
        );
        let ttl = self.config.token_ttl_secs;
        {
            let mut st = lock(&self.state);
            let now = Instant::now();
            st.tokens.retain(|_, exp| *exp > now);
            st.tokens
                .insert(token.clone(), now + Duration::from_secs(ttl));
        }
        Counters::add(&self.counters.tokens_issued, 1);
        Json(json!({"access_token": token, "expires_in": ttl, "token_type": "Bearer"}))
            .into_response()
    }

    /// Check a service-account JWT (RFC 7523): RS256 over `header.payload` with the configured
    /// key; `iss` = the service account, `scope` containing [`SCOPE`], `aud` = the token URL,
    /// `iat`/`exp` at most one hour apart and current.
    pub(super) fn verify_jwt(&self, jwt: &str, now: i64) -> Result<(), (&'static str, String)> {
        let claims = self.signed_claims(jwt)?;
        let s = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
        if s("iss") != self.config.service_account_email {
            return Err(("invalid_grant", "Invalid grant: account not found".into()));
        }
        // Connectors name either Google's token URL or the URL they actually post to.
        let own = format!("{}/token", self.base_url);
        let aud = s("aud");
        if aud != GOOGLE_TOKEN_URL && aud != own {
            return Err((
                "invalid_grant",
                format!("Invalid JWT: aud must be {GOOGLE_TOKEN_URL}"),
            ));
        }
        if !s("scope").split(' ').any(|x| x == SCOPE) {
            return Err((
                "invalid_scope",
                format!("Invalid OAuth scope: {SCOPE} is required"),
            ));
        }
        jwt_timeframe(&claims, now)
    }

    /// Check a self-signed JWT sent as the bearer token itself (Google accepts
    /// these from service accounts: claims `iss` = `sub` = the account, and
    /// either `scope` or `aud` = the API's service URL;
    /// <https://developers.google.com/identity/protocols/oauth2/service-account#jwt-auth>).
    pub(super) fn verify_access_jwt(&self, jwt: &str, now: i64) -> bool {
        let Ok(claims) = self.signed_claims(jwt) else {
            return false;
        };
        let s = |k: &str| claims.get(k).and_then(Value::as_str);
        let account = self.config.service_account_email.as_str();
        let scoped = s("scope").is_some_and(|sc| sc.split(' ').any(|x| x == SCOPE));
        let audience = s("aud").is_some_and(|aud| {
            let aud = aud.trim_end_matches('/');
            aud == MERCHANT_API_AUDIENCE.trim_end_matches('/') || aud == self.base_url
        });
        s("iss") == Some(account)
            && s("sub").is_none_or(|sub| sub == account)
            && (scoped || audience)
            && jwt_timeframe(&claims, now).is_ok()
    }

    /// The claims of an RS256 JWT whose signature the configured key verifies.
    pub(super) fn signed_claims(&self, jwt: &str) -> Result<Value, (&'static str, String)> {
        let bad_sig = || ("invalid_grant", "Invalid JWT Signature.".to_string());
        let parts: Vec<&str> = jwt.split('.').collect();
        if parts.len() != 3 {
            return Err(("invalid_grant", "Invalid JWT: malformed assertion.".into()));
        }
        let header: Value = b64url_decode(parts[0])
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(("invalid_grant", "Invalid JWT: bad header.".to_string()))?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(bad_sig());
        }
        let sig = b64url_decode(parts[2]).ok_or_else(bad_sig)?;
        if let Some(key) = &self.key {
            let signed = &jwt[..parts[0].len() + 1 + parts[1].len()];
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                key,
            )
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| bad_sig())?;
        }
        b64url_decode(parts[1])
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(("invalid_grant", "Invalid JWT: bad claim set.".to_string()))
    }
}

/// `iat`/`exp` present, current, and at most one hour apart.
pub(super) fn jwt_timeframe(claims: &Value, now: i64) -> Result<(), (&'static str, String)> {
    let timeframe = || {
        (
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".to_string(),
        )
    };
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(timeframe)?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(timeframe)?;
    // Skew allowance of 60 s is a choice.
    if exp <= now || iat > now + 60 || exp < iat || exp - iat > 3600 {
        return Err(timeframe());
    }
    Ok(())
}
