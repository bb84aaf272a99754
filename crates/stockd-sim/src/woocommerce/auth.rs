//! Authentication as `class-wc-rest-authentication.php` does it: OAuth 1.0a over plain HTTP,
//! Basic auth and query-string keys over HTTPS
//! (<https://woocommerce.github.io/woocommerce-rest-api-docs/#authentication>,
//! <https://github.com/woocommerce/woocommerce/blob/trunk/plugins/woocommerce/includes/class-wc-rest-authentication.php>).

use super::*;

/// Query string as PHP's `$_GET` sees it: one value per name, the last one
/// given, at the name's first position. WooCommerce signs and reads these, so
/// a client that repeats a parameter (the official JavaScript client sends each
/// query parameter twice and signs it once) is accepted by a real shop
/// (<https://www.php.net/manual/en/reserved.variables.get.php>).
pub(super) fn parse_query(q: &str) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in parse_form_urlencoded(q) {
        match params.iter_mut().find(|(name, _)| *name == k) {
            Some(existing) => existing.1 = v,
            None => params.push((k, v)),
        }
    }
    params
}

/// `Authorization: OAuth k="v", ...` parameters.
pub(super) fn parse_oauth_header(h: &str) -> Vec<(String, String)> {
    let Some(rest) = h.trim().strip_prefix("OAuth ") else {
        return vec![];
    };
    rest.split(',')
        .filter_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            Some((
                k.trim().to_string(),
                percent_decode(v.trim().trim_matches('"'), Plus::Literal),
            ))
        })
        .collect()
}

/// The string WooCommerce signs: METHOD & enc(base URL) & enc(sorted k=v pairs).
pub fn oauth_base_string(method: &str, base_url: &str, params: &[(String, String)]) -> String {
    let mut ps: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "oauth_signature")
        .collect();
    ps.sort_by(|a, b| a.0.cmp(&b.0));
    let pairs: Vec<String> = ps
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!(
        "{}&{}&{}",
        method.to_uppercase(),
        percent_encode(base_url),
        percent_encode(&pairs.join("&"))
    )
}

/// base64 signature for `HMAC-SHA1` or `HMAC-SHA256` with key `consumer_secret&`.
pub fn oauth_signature(
    method: &str,
    sig_method: &str,
    base_url: &str,
    params: &[(String, String)],
    consumer_secret: &str,
) -> Option<String> {
    let base = oauth_base_string(method, base_url, params);
    let key = format!("{consumer_secret}&");
    let raw = match sig_method {
        "HMAC-SHA1" => hmac_sha1(key.as_bytes(), base.as_bytes()).to_vec(),
        "HMAC-SHA256" => hmac_sha256(key.as_bytes(), base.as_bytes()),
        _ => return None,
    };
    Some(base64::engine::general_purpose::STANDARD.encode(raw))
}

pub(super) enum Auth {
    Ok,
    /// No credentials at all: the endpoint's own permission check answers.
    Anonymous,
    Fail(Response),
}

pub(super) const BASIC_REALM: &str =
    "Basic realm=\"WooCommerce API. Use a consumer key in the username field and a consumer secret in the password field.\"";

pub(super) fn auth_error(message: &str, basic: bool) -> Response {
    let mut r = wc_error(
        StatusCode::UNAUTHORIZED,
        "woocommerce_rest_authentication_error",
        message,
    );
    if basic {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static(BASIC_REALM));
    }
    r
}

impl Woo {
    pub(super) fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
        path: &str,
        query: &[(String, String)],
    ) -> Auth {
        let cfg = &self.config;
        if cfg.https_terminated {
            let q = |n: &str| {
                query
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_empty())
            };
            let mut creds = match (q("consumer_key"), q("consumer_secret")) {
                (Some(k), Some(s)) => Some((k, s)),
                _ => None,
            };
            if creds.is_none() {
                creds = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Basic "))
                    .and_then(|b| {
                        base64::engine::general_purpose::STANDARD
                            .decode(b.trim())
                            .ok()
                    })
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .and_then(|s| {
                        s.split_once(':')
                            .map(|(u, p)| (u.to_string(), p.to_string()))
                    })
                    .filter(|(u, p)| !u.is_empty() && !p.is_empty());
            }
            if let Some((ck, cs)) = creds {
                // An unknown key is simply unauthenticated.
                if ck == cfg.consumer_key {
                    if !ct_eq(cs.as_bytes(), cfg.consumer_secret.as_bytes()) {
                        return Auth::Fail(auth_error("Consumer secret is invalid.", true));
                    }
                    return self.permissions(method, true);
                }
            }
        }
        // OAuth 1.0a one-legged.
        let mut params: Vec<(String, String)> = query.to_vec();
        if let Some(h) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
            params.extend(parse_oauth_header(h));
        }
        let get = |n: &str| {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let names = [
            "oauth_consumer_key",
            "oauth_timestamp",
            "oauth_nonce",
            "oauth_signature",
            "oauth_signature_method",
        ];
        let missing: Vec<&str> = names.iter().copied().filter(|n| get(n).is_none()).collect();
        if missing.len() == names.len() {
            return Auth::Anonymous;
        }
        if !missing.is_empty() {
            let msg = if missing.len() == 1 {
                format!("Missing OAuth parameter {}", missing[0])
            } else {
                format!("Missing OAuth parameters {}", missing.join(", "))
            };
            return Auth::Fail(wc_error(
                StatusCode::UNAUTHORIZED,
                "woocommerce_rest_authentication_missing_parameter",
                &msg,
            ));
        }
        let ck = get("oauth_consumer_key").unwrap_or_default();
        if ck != cfg.consumer_key {
            return Auth::Fail(auth_error("Consumer key is invalid.", false));
        }
        let sig_method = get("oauth_signature_method").unwrap_or_default();
        if sig_method != "HMAC-SHA1" && sig_method != "HMAC-SHA256" {
            return Auth::Fail(auth_error(
                "Invalid signature - signature method is invalid.",
                false,
            ));
        }
        // `$_GET` turned '+' into ' '; WooCommerce turns it back before comparing.
        let given = get("oauth_signature").unwrap_or_default().replace(' ', "+");
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let scheme = if cfg.https_terminated {
            "https"
        } else {
            "http"
        };
        let base_url = format!("{scheme}://{host}{path}");
        let sign_params: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "oauth_signature")
            .cloned()
            .collect();
        let expected = oauth_signature(
            method.as_str(),
            &sig_method,
            &base_url,
            &sign_params,
            &cfg.consumer_secret,
        )
        .unwrap_or_default();
        if !ct_eq(expected.as_bytes(), given.as_bytes()) {
            return Auth::Fail(auth_error(
                "Invalid signature - provided signature does not match.",
                false,
            ));
        }
        let ts: i64 = get("oauth_timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let now = chrono::Utc::now().timestamp();
        if ts < now - 15 * 60 || ts > now + 15 * 60 {
            return Auth::Fail(auth_error("Invalid timestamp.", false));
        }
        let nonce = get("oauth_nonce").unwrap_or_default();
        {
            let mut st = lock(&self.state);
            if !st.nonces.insert(nonce) {
                return Auth::Fail(auth_error(
                    "Invalid nonce - nonce has already been used.",
                    false,
                ));
            }
        }
        self.permissions(method, false)
    }

    pub(super) fn permissions(&self, method: &Method, basic: bool) -> Auth {
        let p = self.config.key_permissions.as_str();
        let read = matches!(*method, Method::GET | Method::HEAD);
        if read && p == "write" {
            return Auth::Fail(auth_error(
                "The API key provided does not have read permissions.",
                basic,
            ));
        }
        if !read && p == "read" {
            return Auth::Fail(auth_error(
                "The API key provided does not have write permissions.",
                basic,
            ));
        }
        Auth::Ok
    }
}
