//! Response shapes (the SP-API `errors` list, `x-amzn-RequestId`, `x-amzn-RateLimit-Limit`),
//! query parsing, and the gate every operation passes: faults, `x-amz-access-token`, then the
//! operation's token bucket
//! (<https://developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-limits>).

use super::*;

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// `ErrorList`.
pub(super) fn amz_error(status: StatusCode, code: &str, message: &str, details: &str) -> Response {
    json_response(
        status,
        &json!({"errors": [{"code": code, "message": message, "details": details}]}),
    )
}

/// The rate value as `x-amzn-RateLimit-Limit` carries it (format UNCONFIRMED: "5.0").
pub(super) fn rate_header(rate: f64) -> String {
    if rate.fract() == 0.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate}")
    }
}

pub(super) fn quota_exceeded() -> Response {
    amz_error(
        StatusCode::TOO_MANY_REQUESTS,
        "QuotaExceeded",
        "You exceeded your quota for the requested resource.",
        "",
    )
}

pub(super) fn bad_listing_request(details: &str) -> Response {
    // Listings model sandbox: BAD_REQUEST / "Invalid input"; the details name the problem.
    amz_error(
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
        "Invalid input",
        details,
    )
}

pub(super) fn invalid_input(details: &str) -> Response {
    // Orders/Feeds model sandbox: InvalidInput.
    amz_error(
        StatusCode::BAD_REQUEST,
        "InvalidInput",
        "Invalid Input",
        details,
    )
}

pub(super) fn denied(details: &str) -> Response {
    // 403 per the models; the code is UNCONFIRMED (`Unauthorized` seen in the wild).
    amz_error(
        StatusCode::FORBIDDEN,
        "Unauthorized",
        "Access to requested resource is denied.",
        details,
    )
}

pub(super) struct Query(pub(super) Vec<(String, String)>);

impl Query {
    pub(super) fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// Array parameters: comma-separated and/or repeated keys are both accepted.
    pub(super) fn list(&self, key: &str) -> Option<Vec<String>> {
        let vals: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| k == key || *k == format!("{key}[]"))
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect();
        if self
            .0
            .iter()
            .any(|(k, _)| k == key || *k == format!("{key}[]"))
        {
            Some(vals)
        } else {
            None
        }
    }
}

impl Amazon {
    /// Adds `x-amzn-RequestId` everywhere and `x-amzn-RateLimit-Limit` on 200/201/202/400/404
    /// (the statuses whose model responses declare it).
    pub(super) fn finish(&self, op: &str, mut r: Response) -> Response {
        let id = self.core.uuid();
        if let Ok(v) = HeaderValue::from_str(&id) {
            r.headers_mut().insert("x-amzn-RequestId", v);
        }
        let s = r.status().as_u16();
        if matches!(s, 200 | 201 | 202 | 400 | 404) {
            if let Some(l) = self.config.rate_limits.get(op) {
                if let Ok(v) = HeaderValue::from_str(&rate_header(l.rate)) {
                    r.headers_mut().insert("x-amzn-RateLimit-Limit", v);
                }
            }
        }
        r
    }

    pub(super) fn injected(&self, inj: Injected) -> Response {
        match inj {
            // Bodies of injected 5xx are UNCONFIRMED; the ErrorList shape is kept.
            Injected::Outage => amz_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Service temporarily unavailable.",
                "",
            ),
            Injected::ServerError => amz_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "We encountered an internal error. Please try again.",
                "",
            ),
            Injected::Throttle { retry_after } => {
                let mut r = quota_exceeded();
                // Amazon sends no Retry-After (UNCONFIRMED); only when the fault asks.
                if let Some(secs) = retry_after {
                    if let Ok(v) = HeaderValue::from_str(&retry_after_value(secs)) {
                        r.headers_mut().insert("retry-after", v);
                    }
                }
                r
            }
        }
    }

    pub(super) fn authorize(&self, headers: &HeaderMap) -> Result<(), Response> {
        let Some(tok) = headers
            .get("x-amz-access-token")
            .and_then(|v| v.to_str().ok())
        else {
            return Err(denied(""));
        };
        let st = lock(&self.state);
        match st.tokens.get(tok) {
            None => Err(denied(
                "The access token you provided is revoked, malformed or invalid.",
            )),
            Some(exp) if Instant::now() >= *exp => {
                Err(denied("The access token you provided has expired."))
            }
            Some(_) => Ok(()),
        }
    }

    /// Takes one token from the operation's bucket.
    pub(super) fn take(&self, op: &str) -> bool {
        let Some(limit) = self.config.rate_limits.get(op).copied() else {
            return true;
        };
        let mut st = lock(&self.state);
        let now = Instant::now();
        let (level, at) = st
            .buckets
            .entry(op.to_string())
            .or_insert((limit.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * limit.rate).min(limit.burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            true
        } else {
            false
        }
    }

    /// Faults, then authentication, then the operation's bucket.
    pub(super) async fn gate(&self, op: &str, headers: &HeaderMap) -> Result<(), Response> {
        if let Some(inj) = self.core.intercept().await {
            return Err(self.injected(inj));
        }
        self.authorize(headers)?;
        if !self.take(op) {
            Counters::add(&self.core.counters.rate_limit_violations, 1);
            return Err(quota_exceeded());
        }
        Ok(())
    }

    pub(super) fn check_seller(&self, seller: &str) -> Result<(), Response> {
        if seller == self.config.seller_id {
            Ok(())
        } else {
            Err(denied(
                "The seller id does not match the authorized selling partner.",
            ))
        }
    }

    pub(super) fn check_marketplaces(&self, q: &Query) -> Result<(), Response> {
        match q.list("marketplaceIds") {
            None => Err(bad_listing_request(
                "Missing required parameter marketplaceIds.",
            )),
            Some(ids) if ids.is_empty() => Err(bad_listing_request(
                "Missing required parameter marketplaceIds.",
            )),
            Some(ids) if !ids.contains(&self.config.marketplace_id) => Err(bad_listing_request(
                "The seller is not registered in the requested marketplace.",
            )),
            Some(_) => Ok(()),
        }
    }

    pub(super) fn listing_view(&self, l: &Listing) -> SimListing {
        let mut external = Map::new();
        external.insert("seller_sku".into(), json!(l.sku));
        external.insert("marketplace_id".into(), json!(self.config.marketplace_id));
        external.insert("product_type".into(), json!(l.product_type));
        let q = l.quantity();
        SimListing {
            sku: l.sku.clone(),
            external,
            quantity: q,
            availability: if q > 0 { "in_stock" } else { "out_of_stock" }.into(),
        }
    }
}
