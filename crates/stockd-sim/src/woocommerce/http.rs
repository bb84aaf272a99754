//! Routing of `/wp-json/wc/v3`, WordPress's REST error envelope, the host rate limit and
//! paging headers (<https://developer.wordpress.org/rest-api/using-the-rest-api/pagination/>).

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

pub(super) async fn api_handler(AxState(sim): AxState<Arc<Woo>>, req: Request) -> Response {
    if let Some(inj) = sim.core.intercept().await {
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
    if let Some(wait) = sim.rate_limited() {
        Counters::add(&sim.core.counters.rate_limit_violations, 1);
        return too_many(wait);
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let headers = req.headers().clone();
    let auth = sim.authenticate(&method, &headers, &path, &query);
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
        .trim_start_matches("/wp-json/wc/v3")
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
        Auth::Ok => sim.route(&ctx),
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

    pub(super) fn route(&self, ctx: &Ctx) -> Response {
        let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
        let m = &ctx.method;
        let write = matches!(*m, Method::POST | Method::PUT | Method::PATCH);
        match segs.as_slice() {
            ["products"] if *m == Method::GET => self.list_products(ctx),
            ["products", "batch"]
                if *m == Method::POST || *m == Method::PUT || *m == Method::PATCH =>
            {
                self.batch(ctx, None)
            }
            ["products", id] if *m == Method::GET => self.get_product(id),
            ["products", id] if write => self.update_product(id, ctx),
            ["products", pid, "variations"] if *m == Method::GET => self.list_variations(pid, ctx),
            ["products", pid, "variations", "batch"] if write => match pid.parse::<u64>() {
                Ok(p) => self.batch(ctx, Some(p)),
                Err(_) => invalid_id(),
            },
            ["products", pid, "variations", id] if *m == Method::GET => self.get_variation(pid, id),
            ["products", pid, "variations", id] if write => self.update_variation(pid, id, ctx),
            ["orders"] if *m == Method::GET => self.list_orders(ctx),
            ["orders", id] if *m == Method::GET => {
                let st = lock(&self.state);
                match id.parse::<u64>().ok().and_then(|i| st.orders.get(&i)) {
                    Some(o) => wc_json(StatusCode::OK, &self.order_json(o)),
                    None => wc_error(
                        StatusCode::NOT_FOUND,
                        "woocommerce_rest_shop_order_invalid_id",
                        "Invalid ID.",
                    ),
                }
            }
            ["orders", id] if write => self.update_order(id, ctx),
            ["orders", id, "refunds"] if *m == Method::GET => self.list_refunds(id, ctx),
            ["orders", id, "refunds"] if *m == Method::POST => self.create_refund(id, ctx),
            ["orders", id, "refunds", rid] if *m == Method::GET => self.get_refund(id, rid),
            [] if *m == Method::GET => {
                wc_json(StatusCode::OK, &json!({"namespace": "wc/v3", "routes": {}}))
            }
            _ => wc_error(
                StatusCode::NOT_FOUND,
                "rest_no_route",
                "No route was found matching the URL and request method.",
            ),
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
        let page_items: Vec<Value> = items[start..end].to_vec();
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
