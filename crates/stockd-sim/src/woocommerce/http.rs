//! The `/wp-json/wc/v3` routes, WordPress's REST error envelope, the host rate limit and
//! paging headers (<https://developer.wordpress.org/rest-api/using-the-rest-api/pagination/>).

use axum::extract::{Path, State};
use axum::routing::{get, post};

use super::*;

pub(super) fn wc_json(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, php_json_encode(v)).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

pub(super) fn wc_error(status: StatusCode, code: &str, message: &str) -> Response {
    wc_json(
        status,
        &json!({"code": code, "message": message, "data": {"status": status.as_u16()}}),
    )
}

pub(super) fn err_obj(code: &str, message: &str, status: u16) -> Value {
    json!({"code": code, "message": message, "data": {"status": status}})
}

pub(super) struct Ctx {
    pub(super) method: Method,
    pub(super) segs: Vec<String>,
    pub(super) query: Vec<(String, String)>,
    pub(super) body: Value,
    pub(super) path: String,
}

type Sim = Arc<Woo>;

/// `/wp-json/wc/v3`: one route per path and method; every handler goes through [`Woo::api`].
pub(super) fn router(sim: Sim) -> Router {
    let backend: Arc<dyn SimBackend> = sim.clone();
    Router::new()
        .route("/wp-json/wc/v3", get(index))
        .route("/wp-json/wc/v3/", get(index))
        .route("/wp-json/wc/v3/products", get(list_products))
        .route(
            "/wp-json/wc/v3/products/batch",
            post(batch_products)
                .put(batch_products)
                .patch(batch_products),
        )
        .route(
            "/wp-json/wc/v3/products/{id}",
            get(get_product)
                .post(update_product)
                .put(update_product)
                .patch(update_product),
        )
        .route(
            "/wp-json/wc/v3/products/{pid}/variations",
            get(list_variations),
        )
        .route(
            "/wp-json/wc/v3/products/{pid}/variations/batch",
            post(batch_variations)
                .put(batch_variations)
                .patch(batch_variations),
        )
        .route(
            "/wp-json/wc/v3/products/{pid}/variations/{id}",
            get(get_variation)
                .post(update_variation)
                .put(update_variation)
                .patch(update_variation),
        )
        .route("/wp-json/wc/v3/orders", get(list_orders))
        .route(
            "/wp-json/wc/v3/orders/{id}",
            get(get_order)
                .post(update_order)
                .put(update_order)
                .patch(update_order),
        )
        .route(
            "/wp-json/wc/v3/orders/{id}/refunds",
            get(list_refunds).post(create_refund),
        )
        .route("/wp-json/wc/v3/orders/{id}/refunds/{rid}", get(get_refund))
        .method_not_allowed_fallback(unknown_route)
        .fallback(unknown_route)
        .with_state(sim)
        .merge(sim_router(backend))
}

const API_PREFIX: &str = "/wp-json/wc/v3";

fn no_route() -> Response {
    wc_error(
        StatusCode::NOT_FOUND,
        "rest_no_route",
        "No route was found matching the URL and request method.",
    )
}

/// An unknown path, or a known path with a method WooCommerce does not serve there. Under
/// the API prefix the call still goes through [`Woo::api`] (faults, rate limit, JSON body,
/// authentication, and the permission error an anonymous call gets) before the 404.
async fn unknown_route(State(sim): State<Sim>, req: Request) -> Response {
    let path = req.uri().path();
    let under_api = path
        .strip_prefix(API_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !under_api {
        return no_route();
    }
    sim.api(req, |_, _| no_route()).await
}

async fn index(State(sim): State<Sim>, req: Request) -> Response {
    sim.api(req, |_, _| {
        wc_json(StatusCode::OK, &json!({"namespace": "wc/v3", "routes": {}}))
    })
    .await
}

async fn list_products(State(sim): State<Sim>, req: Request) -> Response {
    sim.api(req, |sim, ctx| sim.list_products(ctx)).await
}

async fn batch_products(State(sim): State<Sim>, req: Request) -> Response {
    sim.api(req, |sim, ctx| sim.batch(ctx, None)).await
}

async fn get_product(State(sim): State<Sim>, Path(id): Path<String>, req: Request) -> Response {
    sim.api(req, |sim, _| sim.get_product(&id)).await
}

async fn update_product(State(sim): State<Sim>, Path(id): Path<String>, req: Request) -> Response {
    sim.api(req, |sim, ctx| sim.update_product(&id, ctx)).await
}

async fn list_variations(
    State(sim): State<Sim>,
    Path(pid): Path<String>,
    req: Request,
) -> Response {
    sim.api(req, |sim, ctx| sim.list_variations(&pid, ctx))
        .await
}

async fn batch_variations(
    State(sim): State<Sim>,
    Path(pid): Path<String>,
    req: Request,
) -> Response {
    sim.api(req, |sim, ctx| match pid.parse::<u64>() {
        Ok(p) => sim.batch(ctx, Some(p)),
        Err(_) => invalid_id(),
    })
    .await
}

async fn get_variation(
    State(sim): State<Sim>,
    Path((pid, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    sim.api(req, |sim, _| sim.get_variation(&pid, &id)).await
}

async fn update_variation(
    State(sim): State<Sim>,
    Path((pid, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    sim.api(req, |sim, ctx| sim.update_variation(&pid, &id, ctx))
        .await
}

async fn list_orders(State(sim): State<Sim>, req: Request) -> Response {
    sim.api(req, |sim, ctx| sim.list_orders(ctx)).await
}

async fn get_order(State(sim): State<Sim>, Path(id): Path<String>, req: Request) -> Response {
    sim.api(req, |sim, _| sim.get_order(&id)).await
}

async fn update_order(State(sim): State<Sim>, Path(id): Path<String>, req: Request) -> Response {
    sim.api(req, |sim, ctx| sim.update_order(&id, ctx)).await
}

async fn list_refunds(State(sim): State<Sim>, Path(id): Path<String>, req: Request) -> Response {
    sim.api(req, |sim, ctx| sim.list_refunds(&id, ctx)).await
}

async fn create_refund(State(sim): State<Sim>, Path(id): Path<String>, req: Request) -> Response {
    sim.api(req, |sim, ctx| sim.create_refund(&id, ctx)).await
}

async fn get_refund(
    State(sim): State<Sim>,
    Path((id, rid)): Path<(String, String)>,
    req: Request,
) -> Response {
    sim.api(req, |sim, _| sim.get_refund(&id, &rid)).await
}

impl Woo {
    /// What every `/wp-json/wc/v3` call goes through, in WooCommerce's order: injected
    /// faults, the host rate limit, the JSON body, then authentication (a failed check answers
    /// its 401, an anonymous call the endpoint's permission error); `handle` runs only for
    /// an authenticated call.
    pub(super) async fn api(
        &self,
        req: Request,
        handle: impl FnOnce(&Woo, &Ctx) -> Response,
    ) -> Response {
        if let Some(inj) = self.core.intercept().await {
            return match inj {
                // Shape chosen: WordPress's REST error envelope; an outage body is host-dependent.
                Injected::Outage => wc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "Service Unavailable",
                ),
                Injected::ServerError => wc_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_server_error",
                    "<p>There has been a critical error on this website.</p>",
                ),
                Injected::Throttle { retry_after } => too_many(retry_after.unwrap_or(1.0)),
            };
        }
        if let Some(wait) = self.rate_limited() {
            Counters::add(&self.core.counters.rate_limit_violations, 1);
            return too_many(wait);
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = parse_query(req.uri().query().unwrap_or(""));
        let headers = req.headers().clone();
        let auth = self.authenticate(&method, &headers, &path, &query);
        let body_bytes = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
            Ok(b) => b,
            Err(_) => {
                return wc_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "rest_payload_too_large",
                    "Payload too large.",
                )
            }
        };
        let body: Value = if body_bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body_bytes) {
                Ok(v) => v,
                Err(_) => {
                    return wc_error(
                        StatusCode::BAD_REQUEST,
                        "rest_invalid_json",
                        "Invalid JSON body passed.",
                    )
                }
            }
        };
        let segs: Vec<String> = path
            .trim_start_matches(API_PREFIX)
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let ctx = Ctx {
            method,
            segs,
            query,
            body,
            path,
        };
        match auth {
            Auth::Fail(r) => r,
            Auth::Anonymous => anonymous_denied(&ctx),
            Auth::Ok => handle(self, &ctx),
        }
    }
}

pub(super) fn too_many(secs: f64) -> Response {
    // Host-level limit; code and message UNCONFIRMED (WooCommerce core has no limit).
    let mut r = wc_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rest_too_many_requests",
        "Too many requests.",
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after_value(secs.ceil())) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

/// An unauthenticated request fails the endpoint's permission check (code UNCONFIRMED).
pub(super) fn anonymous_denied(ctx: &Ctx) -> Response {
    let is_batch = ctx.segs.last().map(String::as_str) == Some("batch");
    let is_item = ctx.segs.last().is_some_and(|s| s.parse::<u64>().is_ok());
    let (code, msg) = if is_batch {
        (
            "woocommerce_rest_cannot_batch",
            "Sorry, you are not allowed to batch manipulate this resource.",
        )
    } else if matches!(ctx.method, Method::GET | Method::HEAD) {
        if is_item {
            (
                "woocommerce_rest_cannot_view",
                "Sorry, you cannot view this resource.",
            )
        } else {
            (
                "woocommerce_rest_cannot_view",
                "Sorry, you cannot list resources.",
            )
        }
    } else if ctx.method == Method::DELETE {
        (
            "woocommerce_rest_cannot_delete",
            "Sorry, you are not allowed to delete this resource.",
        )
    } else if is_item {
        (
            "woocommerce_rest_cannot_edit",
            "Sorry, you are not allowed to edit this resource.",
        )
    } else {
        (
            "woocommerce_rest_cannot_create",
            "Sorry, you are not allowed to create resources.",
        )
    };
    wc_error(StatusCode::UNAUTHORIZED, code, msg)
}

pub(super) const BATCH_LIMIT: usize = 100;

impl Woo {
    pub(super) fn rate_limited(&self) -> Option<f64> {
        let (burst, rate) = self.config.rate_limit?;
        let mut st = lock(&self.state);
        let (level, at) = st.bucket.get_or_insert((burst, Instant::now()));
        let now = Instant::now();
        *level = (*level + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            None
        } else {
            Some(((1.0 - *level) / rate.max(1e-9)).max(0.001))
        }
    }

    pub(super) fn paginate(&self, ctx: &Ctx, items: Vec<Value>) -> Response {
        let q = |n: &str| {
            ctx.query
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let per_page = match q("per_page").map(|v| v.parse::<i64>()) {
            None => 10,
            Some(Ok(n)) if (1..=100).contains(&n) => n as usize,
            Some(_) => {
                // The 100 maximum is UNCONFIRMED; WordPress's standard collection limit.
                return wc_json(
                    StatusCode::BAD_REQUEST,
                    &json!({"code": "rest_invalid_param", "message": "Invalid parameter(s): per_page",
                        "data": {"status": 400, "params": {"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"}}}),
                );
            }
        };
        let page = match q("page").map(|v| v.parse::<usize>()) {
            None => 1,
            Some(Ok(n)) if n >= 1 => n,
            Some(_) => {
                return wc_json(
                    StatusCode::BAD_REQUEST,
                    &json!({"code": "rest_invalid_param", "message": "Invalid parameter(s): page",
                        "data": {"status": 400, "params": {"page": "page must be greater than or equal to 1"}}}),
                )
            }
        };
        let offset = q("offset").and_then(|v| v.parse::<usize>().ok());
        let total = items.len();
        let total_pages = total.div_ceil(per_page);
        let start = offset.unwrap_or((page - 1) * per_page).min(total);
        let end = (start + per_page).min(total);
        let page_items = super::collection::filter_fields(ctx, items[start..end].to_vec());
        let mut r = wc_json(StatusCode::OK, &Value::Array(page_items));
        let h = r.headers_mut();
        h.insert("x-wp-total", HeaderValue::from(total as u64));
        h.insert("x-wp-totalpages", HeaderValue::from(total_pages as u64));
        // WooCommerce's collection controllers (WC_REST_CRUD_Controller::get_items)
        // send only `prev` and `next`, each the request's own query with `page`
        // replaced (add_query_arg over get_query_params), so every parameter the
        // client sent comes back, credentials included.
        let link = |p: usize| {
            let mut qs: Vec<String> = Vec::new();
            let mut page_set = false;
            for (k, v) in &ctx.query {
                if k == "page" {
                    qs.push(format!("page={p}"));
                    page_set = true;
                } else {
                    qs.push(format!("{}={}", percent_encode(k), percent_encode(v)));
                }
            }
            if !page_set {
                qs.push(format!("page={p}"));
            }
            format!("<{}{}?{}>", self.home, ctx.path, qs.join("&"))
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!(
                "{}; rel=\"prev\"",
                link((page - 1).min(total_pages.max(1)))
            ));
        }
        if page < total_pages {
            links.push(format!("{}; rel=\"next\"", link(page + 1)));
        }
        if !links.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
                h.insert("link", v);
            }
        }
        r
    }
}

pub(super) fn invalid_id() -> Response {
    wc_error(
        StatusCode::NOT_FOUND,
        "woocommerce_rest_product_invalid_id",
        "Invalid ID.",
    )
}

pub(super) fn variation_on_products() -> Response {
    wc_error(
        StatusCode::NOT_FOUND,
        "woocommerce_rest_invalid_product_id",
        "To manipulate product variations you should use the /products/<product_id>/variations/<id> endpoint.",
    )
}
