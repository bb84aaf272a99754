//! Authentication: the client-credentials token endpoint with expiring JWT-shaped tokens,
//! and the Bearer check every API call passes
//! (<https://api.bol.com/retailer/public/Retailer-API/authentication.html>).

use super::http::{header, problem, Ctx};
use super::state::Bol;
use super::*;

/// The OAuth2 error shape; bol's exact body is UNCONFIRMED (the official PHP client reads
/// `error_description`).
pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

pub(super) fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

impl Bol {
    pub(super) fn token(&self, ctx: &Ctx) -> Response {
        let creds = header(&ctx.headers, "authorization")
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("basic")
                    .then(|| rest.trim().to_string())
            })
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let Some((id, secret)) = creds.as_deref().and_then(|c| c.split_once(':')) else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Full authentication is required: use HTTP Basic client credentials.",
            );
        };
        if !ct_eq(id.as_bytes(), self.config.client_id.as_bytes())
            || !ct_eq(secret.as_bytes(), self.config.client_secret.as_bytes())
        {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Bad client credentials",
            );
        }
        // Liberal: grant_type in the form body or in the query string.
        let body = String::from_utf8_lossy(&ctx.body).to_string();
        let mut params = parse_form_urlencoded(&body);
        params.extend(ctx.query.iter().cloned());
        let grant = params
            .iter()
            .find(|(k, _)| k == "grant_type")
            .map(|(_, v)| v.as_str());
        if grant != Some("client_credentials") {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only grant_type=client_credentials is supported.",
            );
        }
        let now = self.now().timestamp();
        let ttl = self.config.token_ttl_secs;
        let jti = self.core.uuid();
        let head = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({
            "sub": id, "client_id": id, "iat": now, "exp": now + ttl as i64,
            "jti": jti, "scope": ["RETAILER"], "iss": "https://login.bol.com",
        });
        let payload = b64url(claims.to_string().as_bytes());
        let signing = format!("{head}.{payload}");
        let sig = b64url(&hmac_sha256(&self.jwt_key, signing.as_bytes()));
        let token = format!("{signing}.{sig}");
        let expires = Instant::now() + Duration::from_secs(ttl);
        {
            let mut st = lock(&self.state);
            let now_i = Instant::now();
            if st.client_token.get(id).is_some_and(|e| *e > now_i) {
                st.stats.token_requests_while_valid += 1;
            }
            st.stats.tokens_issued += 1;
            st.client_token.insert(id.to_string(), expires);
            st.tokens.retain(|_, e| *e > now_i);
            st.tokens.insert(token.clone(), expires);
        }
        (
            StatusCode::OK,
            axum::Json(json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": ttl,
                "scope": "RETAILER",
            })),
        )
            .into_response()
    }

    pub(super) fn authenticate(&self, ctx: &Ctx) -> Result<(), Box<Response>> {
        let token = header(&ctx.headers, "authorization").and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_string())
        });
        let ok = token.is_some_and(|t| {
            lock(&self.state)
                .tokens
                .get(&t)
                .is_some_and(|e| *e > Instant::now())
        });
        if ok {
            return Ok(());
        }
        // 401 with a Problem for a missing, invalid or expired token.
        let mut r = problem(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Full authentication is required to access this resource: the access token is missing, invalid or expired.",
            ctx.instance(),
            vec![],
        );
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        Err(Box::new(r))
    }
}
