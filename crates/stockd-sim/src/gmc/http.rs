//! Routing of the Merchant API paths, the Bearer check, paging, and the sunset Content API
//! (<https://developers.google.com/shopping-content/guides/deprecation-and-sunset>).

use super::*;

pub(super) async fn content_handler(AxState(sim): AxState<Arc<Gmc>>) -> Response {
    Counters::add(&sim.core.counters.requests, 1);
    Counters::add(&sim.counters.content_api_requests, 1);
    // 410 with the Google error shape; the status string is UNCONFIRMED.
    gerr(
        StatusCode::GONE,
        "NOT_FOUND",
        "Content API for Shopping has been sunset. Migrate to Merchant API: https://developers.google.com/merchant/api",
    )
}

pub(super) async fn gmc_stats_handler(AxState(sim): AxState<Arc<Gmc>>) -> Response {
    Json(sim.counters.snapshot()).into_response()
}

pub(super) enum Route {
    InsertInput,
    PatchInput(String),
    DeleteInput(String),
    GetProduct(String),
    ListProducts,
    InsertLocal(String),
    ListLocal(String),
    DeleteLocal(String, String),
    ListQuotas,
}

/// Route a request to its method; also returns the quota method name and the account id.
pub(super) fn route(method: &Method, segs: &[String]) -> Option<(Route, &'static str, String)> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let (r, name, acct) = match (m, s.as_slice()) {
        ("POST", ["products", "v1", "accounts", a, "productInputs:insert"]) => {
            (Route::InsertInput, "productInputs.insert", a)
        }
        ("PATCH", ["products", "v1", "accounts", a, "productInputs", id]) => {
            (Route::PatchInput(id.to_string()), "productInputs.patch", a)
        }
        ("DELETE", ["products", "v1", "accounts", a, "productInputs", id]) => (
            Route::DeleteInput(id.to_string()),
            "productInputs.delete",
            a,
        ),
        ("GET", ["products", "v1", "accounts", a, "products", id]) => {
            (Route::GetProduct(id.to_string()), "products.get", a)
        }
        ("GET", ["products", "v1", "accounts", a, "products"]) => {
            (Route::ListProducts, "products.list", a)
        }
        (
            "POST",
            ["inventories", "v1", "accounts", a, "products", id, "localInventories:insert"],
        ) => (
            Route::InsertLocal(id.to_string()),
            "localInventories.insert",
            a,
        ),
        ("GET", ["inventories", "v1", "accounts", a, "products", id, "localInventories"]) => {
            (Route::ListLocal(id.to_string()), "localInventories.list", a)
        }
        (
            "DELETE",
            ["inventories", "v1", "accounts", a, "products", id, "localInventories", store],
        ) => (
            Route::DeleteLocal(id.to_string(), store.to_string()),
            "localInventories.delete",
            a,
        ),
        ("GET", ["quota", "v1", "accounts", a, "quotas"]) => (Route::ListQuotas, "quotas.list", a),
        _ => return None,
    };
    Some((r, name, acct.to_string()))
}

pub(super) async fn api_handler(AxState(sim): AxState<Arc<Gmc>>, req: Request) -> Response {
    if let Some(inj) = sim.core.intercept().await {
        return match inj {
            Injected::Outage => gerr(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
            ),
            Injected::ServerError => gerr(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal error encountered.",
            ),
            Injected::Throttle { retry_after } => {
                let mut r = quota_error(
                    "quota/request_rate_too_high",
                    "Request rate too high. Retry later.",
                );
                if let Some(secs) = retry_after {
                    if let Ok(v) = HeaderValue::from_str(&retry_after_value(secs)) {
                        r.headers_mut().insert("retry-after", v);
                    }
                }
                r
            }
        };
    }
    let method = req.method().clone();
    let segs: Vec<String> = req
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, Plus::Literal))
        .collect();
    let query = parse_form_urlencoded(req.uri().query().unwrap_or(""));
    if let Err(r) = sim.check_bearer(req.headers()) {
        Counters::add(&sim.counters.auth_failures, 1);
        return *r;
    }
    let Some((route, quota_method, account)) = route(&method, &segs) else {
        return not_found_route();
    };
    if account != sim.config.account_id.to_string() {
        return gerr(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("The caller does not have access to the accounts: [{account}]"),
        );
    }
    if let Some(r) = sim.charge(quota_method) {
        Counters::add(&sim.core.counters.rate_limit_violations, 1);
        return r;
    }
    let body_bytes = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(_) => return invalid("Request payload is too large."),
    };
    let body: Value = if body_bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body_bytes) {
            Ok(v) => v,
            Err(e) => return invalid(&format!("Invalid JSON payload received. {e}")),
        }
    };
    match route {
        Route::InsertInput => sim.insert_input(&query, body),
        Route::PatchInput(id) => sim.patch_input(&id, &query, body),
        Route::DeleteInput(id) => sim.delete_input(&id, &query),
        Route::GetProduct(id) => sim.get_product(&id),
        Route::ListProducts => sim.list_products(&query),
        Route::InsertLocal(id) => sim.insert_local(&id, body),
        Route::ListLocal(id) => sim.list_local(&id, &query),
        Route::DeleteLocal(id, store) => sim.delete_local(&id, &store),
        Route::ListQuotas => sim.list_quotas(),
    }
}

pub(super) fn paging(
    query: &[(String, String)],
    default: usize,
    max: usize,
) -> Result<(usize, usize), Box<Response>> {
    let size = match form_get(query, "pageSize") {
        None | Some("") => default,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 0 => return Err(Box::new(invalid("pageSize must not be negative"))),
            Ok(0) => default,
            Ok(n) => (n as usize).min(max),
            Err(_) => return Err(Box::new(invalid("Invalid value for pageSize"))),
        },
    };
    let offset = match form_get(query, "pageToken") {
        None | Some("") => 0,
        Some(t) => match b64url_decode(t)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse::<usize>().ok()))
        {
            Some(n) => n,
            None => return Err(Box::new(invalid("Invalid page token."))),
        },
    };
    Ok((size, offset))
}

pub(super) fn page_token(next: usize) -> String {
    b64url(format!("o:{next}").as_bytes())
}

impl Gmc {
    pub(super) fn check_bearer(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<(), Box<Response>> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return Err(Box::new(unauthenticated(
                "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            )));
        };
        if token.matches('.').count() == 2 && self.verify_access_jwt(token, now_secs()) {
            return Ok(());
        }
        let st = lock(&self.state);
        match st.tokens.get(token) {
            Some(exp) if *exp > Instant::now() => Ok(()),
            _ => Err(Box::new(unauthenticated(
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            ))),
        }
    }
}
