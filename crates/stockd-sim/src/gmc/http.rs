//! The Merchant API routes, the Bearer check, paging, and the sunset Content API
//! (<https://developers.google.com/shopping-content/guides/deprecation-and-sunset>).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{delete, patch, post};

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

type Sim = Arc<Gmc>;

/// One route per Merchant API path and method. Custom methods (`productInputs:insert`,
/// `localInventories:insert`) are literal segments; product names (`online~nl~NL~sku`) are one
/// path parameter, percent-decoded, and taken apart by `decode_product_id`.
pub(super) fn router(sim: Sim) -> Router {
    let backend: Arc<dyn SimBackend> = sim.clone();
    Router::new()
        .route("/token", any(token_handler))
        .route("/content/{*rest}", any(content_handler))
        .route(
            "/products/v1/accounts/{account}/productInputs:insert",
            post(insert_input),
        )
        .route(
            "/products/v1/accounts/{account}/productInputs/{id}",
            patch(patch_input).delete(delete_input),
        )
        .route(
            "/products/v1/accounts/{account}/products",
            get(list_products),
        )
        .route(
            "/products/v1/accounts/{account}/products/{id}",
            get(get_product),
        )
        .route(
            "/inventories/v1/accounts/{account}/products/{id}/localInventories:insert",
            post(insert_local),
        )
        .route(
            "/inventories/v1/accounts/{account}/products/{id}/localInventories",
            get(list_local),
        )
        .route(
            "/inventories/v1/accounts/{account}/products/{id}/localInventories/{store}",
            delete(delete_local),
        )
        .route("/quota/v1/accounts/{account}/quotas", get(list_quotas))
        .method_not_allowed_fallback(unknown_route)
        .route("/_sim/gmc/stats", get(gmc_stats_handler))
        .fallback(unknown_route)
        .with_state(sim)
        .merge(sim_router(backend))
}

/// The Merchant API services; a call under one of them goes through [`Gmc::gate`] even when
/// its path or method is unknown, so a missing token answers 401 before the 404.
const API_PREFIXES: [&str; 3] = ["/products/v1/", "/inventories/v1/", "/quota/v1/"];

/// An unknown path, or a known path with a method Google does not serve there.
async fn unknown_route(State(sim): State<Sim>, req: Request) -> Response {
    let path = req.uri().path();
    if API_PREFIXES.iter().any(|p| path.starts_with(p)) {
        if let Err(r) = sim.gate(req.headers()).await {
            return *r;
        }
    }
    not_found_route()
}

async fn insert_input(
    State(sim): State<Sim>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    sim.api(req, &account, "productInputs.insert", |sim, query, body| {
        sim.insert_input(query, body)
    })
    .await
}

async fn patch_input(
    State(sim): State<Sim>,
    Path((account, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    sim.api(req, &account, "productInputs.patch", |sim, query, body| {
        sim.patch_input(&id, query, body)
    })
    .await
}

async fn delete_input(
    State(sim): State<Sim>,
    Path((account, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    sim.api(req, &account, "productInputs.delete", |sim, query, _| {
        sim.delete_input(&id, query)
    })
    .await
}

async fn get_product(
    State(sim): State<Sim>,
    Path((account, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    sim.api(req, &account, "products.get", |sim, _, _| {
        sim.get_product(&id)
    })
    .await
}

async fn list_products(
    State(sim): State<Sim>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    sim.api(req, &account, "products.list", |sim, query, _| {
        sim.list_products(query)
    })
    .await
}

async fn insert_local(
    State(sim): State<Sim>,
    Path((account, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    sim.api(req, &account, "localInventories.insert", |sim, _, body| {
        sim.insert_local(&id, body)
    })
    .await
}

async fn list_local(
    State(sim): State<Sim>,
    Path((account, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    sim.api(req, &account, "localInventories.list", |sim, query, _| {
        sim.list_local(&id, query)
    })
    .await
}

async fn delete_local(
    State(sim): State<Sim>,
    Path((account, id, store)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    sim.api(req, &account, "localInventories.delete", |sim, _, _| {
        sim.delete_local(&id, &store)
    })
    .await
}

async fn list_quotas(
    State(sim): State<Sim>,
    Path(account): Path<String>,
    req: Request,
) -> Response {
    sim.api(req, &account, "quotas.list", |sim, _, _| sim.list_quotas())
        .await
}

impl Gmc {
    /// What every Merchant API call goes through first: injected faults, then the Bearer token.
    pub(super) async fn gate(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        if let Some(inj) = self.core.intercept().await {
            return Err(Box::new(injected_response(inj)));
        }
        if let Err(r) = self.check_bearer(headers) {
            Counters::add(&self.counters.auth_failures, 1);
            return Err(r);
        }
        Ok(())
    }

    /// [`Gmc::gate`], then the account in the path, the method's quota (`quota_method`, as
    /// `quotas.list` names it) and the JSON body; `handle` gets the query and the body
    /// (`Null` when empty).
    async fn api(
        &self,
        req: Request,
        account: &str,
        quota_method: &'static str,
        handle: impl FnOnce(&Gmc, &[(String, String)], Value) -> Response,
    ) -> Response {
        if let Err(r) = self.gate(req.headers()).await {
            return *r;
        }
        if account != self.config.account_id.to_string() {
            return gerr(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                &format!("The caller does not have access to the accounts: [{account}]"),
            );
        }
        if let Some(r) = self.charge(quota_method) {
            Counters::add(&self.core.counters.rate_limit_violations, 1);
            return r;
        }
        let query = parse_form_urlencoded(req.uri().query().unwrap_or(""));
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
        handle(self, &query, body)
    }
}

fn injected_response(inj: Injected) -> Response {
    match inj {
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
    pub(super) fn check_bearer(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
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
