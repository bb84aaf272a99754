//! bol's HTTP surface. One axum route per path and method; each API handler reads the
//! request through [`Bol::api`], which applies what every Retailer API call goes through
//! (injected faults, the Bearer token, the endpoint's rate-limit bucket, media-type
//! negotiation) before the handler's own work. Problem bodies and media types:
//! <https://api.bol.com/retailer/public/Retailer-API/index.html> and the specs in `specs/bol/`.

use axum::extract::{Path, Request, State};
use axum::routing::{get, post, put};

use super::auth::oauth_error;
use super::state::Bol;
use super::*;

type Sim = Arc<Bol>;

pub(super) fn router(sim: Sim) -> Router {
    let backend: Arc<dyn SimBackend> = sim.clone();
    Router::new()
        .route("/token", post(token).fallback(token_method_not_allowed))
        .route(
            "/retailer/offers/{offer_id}",
            get(get_offer).patch(patch_offer),
        )
        .route("/retailer/offers/{offer_id}/stock", put(put_stock))
        .route("/retailer/offers/export", post(post_export))
        .route("/retailer/offers/export/{report_id}", get(get_export))
        .route("/retailer/orders", get(list_orders))
        .route("/retailer/orders/cancellation", put(put_cancellation))
        .route("/retailer/orders/{order_id}", get(get_order))
        .route("/retailer/returns", get(list_returns))
        .route(
            "/shared/process-status",
            get(processes_by_entity).post(processes_bulk),
        )
        .route("/shared/process-status/{process_id}", get(get_process))
        .method_not_allowed_fallback(not_found_route)
        .route("/_sim/bol/stats", get(op_stats))
        .route("/_sim/bol/process-outcome", post(op_outcome))
        .route(
            "/_sim/bol/orders/{order_id}/ship",
            post(super::returns::op_ship),
        )
        .route(
            "/_sim/bol/returns",
            post(super::returns::op_register_return),
        )
        .with_state(sim)
        .merge(sim_router(backend))
        .fallback(not_found_route)
}

/// An unknown path, or a known path with a method bol does not serve there.
async fn not_found_route(uri: axum::http::Uri) -> Response {
    not_found(uri.path().trim_start_matches('/'))
}

async fn token(State(sim): State<Sim>, req: Request) -> Response {
    match sim.read_request(req).await {
        Ok(ctx) => sim.token(&ctx),
        Err(r) => r,
    }
}

async fn token_method_not_allowed() -> Response {
    oauth_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "Only POST is supported.",
    )
}

async fn get_offer(State(sim): State<Sim>, Path(offer_id): Path<String>, req: Request) -> Response {
    let allowed: &[&'static str] = if sim.config.v11_enabled {
        &[MEDIA_V10, MEDIA_V11]
    } else {
        &[MEDIA_V10]
    };
    sim.api(req, allowed, |sim, ctx, media| {
        sim.get_offer(ctx, &offer_id, media)
    })
    .await
}

async fn patch_offer(
    State(sim): State<Sim>,
    Path(offer_id): Path<String>,
    req: Request,
) -> Response {
    // The synchronous PATCH exists only in v11; without v11 no media type is acceptable.
    let allowed: &[&'static str] = if sim.config.v11_enabled {
        &[MEDIA_V11]
    } else {
        &[]
    };
    sim.api(req, allowed, |sim, ctx, _| sim.patch_offer(ctx, &offer_id))
        .await
}

async fn put_stock(State(sim): State<Sim>, Path(offer_id): Path<String>, req: Request) -> Response {
    sim.api(req, &[MEDIA_V10], |sim, ctx, _| {
        sim.put_stock(ctx, &offer_id)
    })
    .await
}

async fn post_export(State(sim): State<Sim>, req: Request) -> Response {
    sim.api(req, &[MEDIA_V10], |sim, ctx, _| sim.post_export(ctx))
        .await
}

async fn get_export(
    State(sim): State<Sim>,
    Path(report_id): Path<String>,
    req: Request,
) -> Response {
    sim.api(req, &[MEDIA_V10_CSV], |sim, ctx, _| {
        sim.get_export(ctx, &report_id)
    })
    .await
}

async fn list_orders(State(sim): State<Sim>, req: Request) -> Response {
    sim.api(req, &[MEDIA_V10], |sim, ctx, _| sim.list_orders(ctx))
        .await
}

async fn put_cancellation(State(sim): State<Sim>, req: Request) -> Response {
    sim.api(req, &[MEDIA_V10], |sim, ctx, _| sim.put_cancellation(ctx))
        .await
}

async fn get_order(State(sim): State<Sim>, Path(order_id): Path<String>, req: Request) -> Response {
    sim.api(req, &[MEDIA_V10], |sim, ctx, _| {
        sim.get_order(ctx, &order_id)
    })
    .await
}

async fn list_returns(State(sim): State<Sim>, req: Request) -> Response {
    sim.api(req, &[MEDIA_V10], |sim, ctx, _| sim.list_returns(ctx))
        .await
}

/// Process status is a "shared" resource: it also answers the advertiser media type.
const PROCESS_STATUS_MEDIA: &[&str] = &[MEDIA_V10, MEDIA_ADVERTISER_V10];

async fn processes_by_entity(State(sim): State<Sim>, req: Request) -> Response {
    sim.api(req, PROCESS_STATUS_MEDIA, |sim, ctx, _| {
        sim.processes_by_entity(ctx)
    })
    .await
}

async fn processes_bulk(State(sim): State<Sim>, req: Request) -> Response {
    sim.api(req, PROCESS_STATUS_MEDIA, |sim, ctx, _| {
        sim.processes_bulk(ctx)
    })
    .await
}

async fn get_process(
    State(sim): State<Sim>,
    Path(process_id): Path<String>,
    req: Request,
) -> Response {
    sim.api(req, PROCESS_STATUS_MEDIA, |sim, ctx, _| {
        sim.get_process(ctx, &process_id)
    })
    .await
}

pub(super) struct Ctx {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) query: Vec<(String, String)>,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Ctx {
    pub(super) fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub(super) fn instance(&self) -> &str {
        self.path.trim_start_matches('/')
    }
}

impl Bol {
    /// Injected faults first, then the request as a [`Ctx`].
    async fn read_request(&self, req: Request) -> Result<Ctx, Response> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = parse_form_urlencoded(req.uri().query().unwrap_or(""));
        let headers = req.headers().clone();
        let instance = path.trim_start_matches('/').to_string();
        if let Some(inj) = self.core.intercept().await {
            return Err(match inj {
                Injected::Outage => problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable",
                    "The service is temporarily unavailable.",
                    &instance,
                    vec![],
                ),
                Injected::ServerError => problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                    "An unexpected error occurred.",
                    &instance,
                    vec![],
                ),
                Injected::Throttle { retry_after } => {
                    too_many(retry_after.unwrap_or(1.0), &instance)
                }
            });
        }
        let body = match axum::body::to_bytes(req.into_body(), 4 << 20).await {
            Ok(b) => b.to_vec(),
            Err(_) => {
                return Err(bad_request(
                    &instance,
                    vec![("body".into(), "Body too large.".into())],
                ))
            }
        };
        Ok(Ctx {
            method,
            path,
            query,
            headers,
            body,
        })
    }

    /// One Retailer API call: faults, Bearer token, the rate-limit bucket, then the media type
    /// among `allowed`; `handle` gets the negotiated type. The answer carries the bucket's
    /// headers and, for a newer version, its media type.
    async fn api(
        &self,
        req: Request,
        allowed: &[&'static str],
        handle: impl FnOnce(&Bol, &Ctx, &'static str) -> Response,
    ) -> Response {
        let ctx = match self.read_request(req).await {
            Ok(ctx) => ctx,
            Err(r) => return r,
        };
        if let Err(r) = self.authenticate(&ctx) {
            return *r;
        }
        let segs: Vec<&str> = ctx.path.split('/').filter(|s| !s.is_empty()).collect();
        let rate_limit_headers = match self.rate_limit(ctx.method.as_str(), &segs) {
            Ok(h) => h,
            Err(wait) => {
                Counters::add(&self.core.counters.rate_limit_violations, 1);
                return too_many(wait, ctx.instance());
            }
        };
        let media = match self.negotiate(&ctx, allowed) {
            Ok(m) => m,
            Err(r) => return *r,
        };
        let mut resp = handle(self, &ctx, media);
        if media != MEDIA_V10 && resp.headers().get("content-type").is_some() {
            if let Ok(h) = HeaderValue::from_str(media) {
                resp.headers_mut().insert("content-type", h);
            }
        }
        for (k, v) in rate_limit_headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }

    /// Check Accept (and Content-Type on bodies) against the media types the endpoint serves.
    /// Returns the negotiated type. Status for a wrong type is UNCONFIRMED:
    /// 406 for Accept, 415 for Content-Type.
    pub(super) fn negotiate(
        &self,
        ctx: &Ctx,
        allowed: &[&'static str],
    ) -> Result<&'static str, Box<Response>> {
        let accepts = media_types(header(&ctx.headers, "accept"));
        let Some(chosen) = accepts
            .iter()
            .find_map(|a| allowed.iter().find(|m| **m == a.as_str()).copied())
        else {
            return Err(Box::new(problem(
                StatusCode::NOT_ACCEPTABLE,
                "Not Acceptable",
                "The requested media type in the Accept header is not supported by this endpoint.",
                ctx.instance(),
                vec![(
                    "Accept".into(),
                    format!(
                        "Request contains invalid value(s): '{}', allowed values: {}.",
                        header(&ctx.headers, "accept").unwrap_or(""),
                        allowed.join(", ")
                    ),
                )],
            )));
        };
        if matches!(ctx.method, Method::PUT | Method::POST | Method::PATCH) {
            let ct = media_types(header(&ctx.headers, "content-type"));
            if ct.first().map(String::as_str) != Some(chosen) {
                return Err(Box::new(problem(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Unsupported Media Type",
                    "The media type in the Content-Type header is not supported by this endpoint.",
                    ctx.instance(),
                    vec![(
                        "Content-Type".into(),
                        format!(
                            "Request contains invalid value(s): '{}', allowed values: {chosen}.",
                            header(&ctx.headers, "content-type").unwrap_or("")
                        ),
                    )],
                )));
            }
        }
        Ok(chosen)
    }

    pub(super) fn parse_body(&self, ctx: &Ctx) -> Result<Map<String, Value>, Box<Response>> {
        match serde_json::from_slice::<Value>(&ctx.body) {
            Ok(Value::Object(o)) => Ok(o),
            _ => Err(Box::new(bad_request(
                ctx.instance(),
                vec![(
                    "body".into(),
                    "Request body is missing or is not a valid JSON object.".into(),
                )],
            ))),
        }
    }
}

pub(super) fn problem(
    status: StatusCode,
    title: &str,
    detail: &str,
    instance: &str,
    violations: Vec<(String, String)>,
) -> Response {
    let v: Vec<Value> = violations
        .into_iter()
        .map(|(name, reason)| json!({"name": name, "reason": reason}))
        .collect();
    let body = json!({
        "type": PROBLEM_TYPE,
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "host": "Instance-001",
        "instance": format!("https://api.bol.com/{instance}"),
        "violations": v,
    });
    vnd_json(status, MEDIA_V10, &body)
}

pub(super) fn bad_request(instance: &str, violations: Vec<(String, String)>) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "Error validating request. Consult the bol.com API documentation for more information.",
        "Bad request",
        instance,
        violations,
    )
}

pub(super) fn not_found(instance: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Not Found",
        "The requested item could not be found.",
        instance,
        vec![],
    )
}

pub(super) fn vnd_json(status: StatusCode, media: &str, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    if let Ok(h) = HeaderValue::from_str(media) {
        r.headers_mut().insert("content-type", h);
    }
    r
}

pub(super) fn too_many(secs: f64, instance: &str) -> Response {
    // Body wording UNCONFIRMED; status and integer Retry-After per
    let mut r = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "Too Many Requests",
        "Too many requests, retry later.",
        instance,
        vec![],
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after_value(secs.ceil().max(1.0))) {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

pub(super) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The media types listed in an Accept or Content-Type header, lower case, without parameters.
pub(super) fn media_types(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

// Operator endpoints specific to bol.

async fn op_stats(State(sim): State<Sim>) -> Response {
    axum::Json(sim.bol_stats()).into_response()
}

#[derive(Deserialize)]
struct OutcomeBody {
    sku: String,
    outcome: ProcessOutcome,
}

async fn op_outcome(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<OutcomeBody>(&body) {
        Ok(b) => {
            lock(&sim.state).outcomes.insert(b.sku.clone(), b.outcome);
            axum::Json(json!({"sku": b.sku, "outcome": b.outcome})).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "bad_request", "message": e.to_string()})),
        )
            .into_response(),
    }
}
