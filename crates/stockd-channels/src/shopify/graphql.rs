//! The GraphQL side: the documents stockd sends, their requested-cost
//! estimates, sending one document paced by the cost bucket, and reading
//! answers, errors and `throttleStatus`.

use super::*;

pub(super) const SET_SELECTION: &str = "inventoryAdjustmentGroup { reason referenceDocumentUri \
     changes(quantityNames: [\"available\"]) { name delta quantityAfterChange item { id } location { id } } } \
     userErrors { code field message }";

pub(super) const LEVELS_DOCUMENT: &str = "query StockdLevels($ids: [ID!]!, $locationId: ID!) { \
     nodes(ids: $ids) { ... on InventoryItem { id inventoryLevel(locationId: $locationId) { \
     quantities(names: [\"available\"]) { name quantity } } } } }";

/// The set mutation; with a key, the 2026-01 `@idempotent` directive (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>).
/// The key is inlined like Shopify's examples; it is hex and dashes only.
pub(super) fn set_document(idempotency_key: Option<&str>) -> String {
    let directive = match idempotency_key {
        Some(key) => format!(" @idempotent(key: \"{key}\")"),
        None => String::new(),
    };
    format!(
        "mutation StockdSetQuantities($input: InventorySetQuantitiesInput!) {{ \
         inventorySetQuantities(input: $input){directive} {{ {SET_SELECTION} }} }}"
    )
}

/// Every GraphQL document the connector can send: the level query, the set
/// mutation for versions before 2026-01, and the 2026-01+ set mutation (with
/// an example idempotency key; real keys differ only in that literal).
pub fn graphql_documents() -> Vec<String> {
    let example_key = uuid_from_digest(&Sha256::digest(b"example"));
    vec![
        LEVELS_DOCUMENT.to_string(),
        set_document(None),
        set_document(Some(&example_key)),
        super::orders::orders_document(),
        super::orders::order_document(),
    ]
}

// Requested-cost estimates (<https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits>: objects 1, scalars 0, lists counted once per
// expected element). Mutations are assumed to cost 10 on top (Shopify's usual
// mutation cost; the note does not give it), which only errs high. Whatever
// is overestimated comes back with the refund of requested − actual.
pub(super) fn set_cost(items: usize) -> f64 {
    // payload + group + userErrors, and per item one change with item and location.
    10.0 + 3.0 + 3.0 * items as f64
}

pub(super) fn levels_cost(items: usize) -> f64 {
    // Per id: the item, its level and the one requested quantity.
    1.0 + 3.0 * items as f64
}

/// Tokens taken before sending: the estimate plus a small margin, so that a
/// paced client stays clear of the channel's own count.
pub(super) fn with_margin(cost: f64) -> f64 {
    cost * 1.02 + 2.0
}

/// A successful (2xx, no top-level errors) GraphQL answer.
pub(super) struct GqlOk {
    pub(super) data: Value,
    pub(super) status: u16,
    pub(super) excerpt: String,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct ThrottleStatus {
    pub(super) maximum: f64,
    pub(super) available: f64,
    pub(super) restore_rate: f64,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cost {
    pub(super) requested: Option<f64>,
    pub(super) actual: Option<f64>,
    pub(super) throttle: Option<ThrottleStatus>,
}

impl Cost {
    /// `extensions.cost` (<https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits>).
    pub(super) fn from_response(body: &Value) -> Option<Cost> {
        let cost = body.get("extensions")?.get("cost")?;
        let throttle = cost.get("throttleStatus").and_then(|t| {
            Some(ThrottleStatus {
                maximum: t.get("maximumAvailable")?.as_f64()?,
                available: t.get("currentlyAvailable")?.as_f64()?,
                restore_rate: t.get("restoreRate")?.as_f64()?,
            })
        });
        Some(Cost {
            requested: cost.get("requestedQueryCost").and_then(Value::as_f64),
            actual: cost.get("actualQueryCost").and_then(Value::as_f64),
            throttle,
        })
    }
}

pub(super) fn error_codes(body: &Value) -> Vec<String> {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e.pointer("/extensions/code")
                        .and_then(Value::as_str)
                        .unwrap_or("GRAPHQL_ERROR")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn error_messages(body: &Value) -> String {
    body.get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// Top-level error codes that mean "try again" rather than "this request is wrong".
pub(super) fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "INTERNAL_SERVER_ERROR"
            | "INTERNAL_ERROR"
            | "SERVICE_UNAVAILABLE"
            | "TIMEOUT"
            | "IDEMPOTENCY_CONCURRENT_REQUEST"
    )
}

/// One `InventorySetQuantitiesUserError` (<https://shopify.dev/docs/api/admin-graphql/latest/mutations/inventorySetQuantities>).
#[derive(Debug, Clone)]
pub(super) struct UserError {
    pub(super) code: String,
    pub(super) field: Vec<String>,
    pub(super) message: String,
}

impl UserError {
    pub(super) fn parse(v: &Value) -> UserError {
        UserError {
            code: v
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN")
                .to_string(),
            field: v
                .get("field")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .map(|p| match p {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            message: v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// Which quantity the error names: the index after `quantities` in the
    /// field path (`["input", "quantities", "3", "compareQuantity"]`).
    pub(super) fn position(&self) -> Option<usize> {
        let after = self
            .field
            .iter()
            .position(|p| p == "quantities")
            .and_then(|i| self.field.get(i + 1));
        match after {
            Some(p) => p.parse().ok(),
            None => self.field.iter().find_map(|p| p.parse().ok()),
        }
    }

    pub(super) fn is_stale(&self) -> bool {
        matches!(
            self.code.as_str(),
            "COMPARE_QUANTITY_STALE" | "CHANGE_FROM_QUANTITY_STALE"
        )
    }
}

impl Shopify {
    /// Sends one document, paced by the cost bucket; classifies every failure.
    pub(super) async fn graphql(
        &self,
        query: &str,
        variables: Value,
        estimate: f64,
        set_items: Option<usize>,
    ) -> Result<GqlOk, ChannelError> {
        let taken = with_margin(estimate);
        self.limiter.acquire(taken).await;

        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables }))
            .map_err(|e| ChannelError::new(ErrorClass::Permanent, "encode", e.to_string()))?;
        let mut headers = http::HeaderMap::new();
        let token = http::HeaderValue::from_str(&self.config.access_token).map_err(|_| {
            ChannelError::new(
                ErrorClass::Permanent,
                "bad_config",
                "access token is not a valid header value",
            )
        })?;
        headers.insert("x-shopify-access-token", token);
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let request = HttpRequest {
            method: http::Method::POST,
            url: self.endpoint(),
            headers,
            body,
        };
        let response = match self.transport.send(request).await {
            Ok(response) => response,
            Err(mut e) => {
                // No answer: the tokens stay spent (the request may have run).
                e.class = ErrorClass::Retryable;
                return Err(e);
            }
        };
        self.classify(response, taken, set_items)
    }

    pub(super) fn classify(
        &self,
        response: HttpResponse,
        taken: f64,
        set_items: Option<usize>,
    ) -> Result<GqlOk, ChannelError> {
        let status = response.status;
        let excerpt = response.body_excerpt(BODY_EXCERPT);
        let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
        let cost = parsed.as_ref().and_then(Cost::from_response);
        if let (Some(items), Some(requested)) = (set_items, cost.and_then(|c| c.requested)) {
            self.learn_set_cost(items, requested);
        }

        // <https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits>: refund requested − actual, then adopt the channel's bucket
        // (observe never raises the local count above the channel's).
        if let Some(cost) = cost {
            if let Some(actual) = cost.actual {
                self.limiter.refund((taken - actual).max(0.0));
            }
            if let Some(t) = cost.throttle {
                self.limiter.observe(t.maximum, t.restore_rate, t.available);
                if t.restore_rate > 0.0 {
                    self.restore_rate
                        .store(t.restore_rate.to_bits(), Ordering::Relaxed);
                }
                if t.maximum > 0.0 {
                    self.bucket_size
                        .store(t.maximum.to_bits(), Ordering::Relaxed);
                }
            }
        }

        let codes = parsed.as_ref().map(error_codes).unwrap_or_default();
        let throttled = status == 429 || codes.iter().any(|c| c == "THROTTLED");
        if throttled {
            return Err(self.throttled(&response, cost, taken, status, &excerpt));
        }

        let fail = |class: ErrorClass, code: String, message: String| {
            with_response(ChannelError::new(class, code, message), status, &excerpt)
        };
        match status {
            200..=299 => {}
            500..=599 => {
                return Err(fail(
                    ErrorClass::Retryable,
                    format!("http_{status}"),
                    format!("Shopify answered HTTP {status}"),
                ))
            }
            _ => {
                // 401/403/404 (token, scope, shop), 400/422 and any other 4xx:
                // the same request cannot succeed later.
                return Err(fail(
                    ErrorClass::Permanent,
                    format!("http_{status}"),
                    format!("Shopify answered HTTP {status}"),
                ));
            }
        }

        let Some(body) = parsed else {
            return Err(fail(
                ErrorClass::Retryable,
                "bad_response".into(),
                "response body is not JSON".into(),
            ));
        };
        if let Some(code) = codes.first() {
            let class = if codes.iter().all(|c| is_transient_code(c)) {
                ErrorClass::Retryable
            } else {
                ErrorClass::Permanent
            };
            return Err(fail(class, code.clone(), error_messages(&body)));
        }
        match body.get("data") {
            Some(data) if data.is_object() => Ok(GqlOk {
                data: data.clone(),
                status,
                excerpt,
            }),
            _ => Err(fail(
                ErrorClass::Retryable,
                "bad_response".into(),
                "response has no data".into(),
            )),
        }
    }

    /// THROTTLED as HTTP 200 or 429 (<https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits>): wait for `Retry-After` when
    /// given, else until the channel's bucket holds the requested cost.
    /// Nothing leaves before then.
    pub(super) fn throttled(
        &self,
        response: &HttpResponse,
        cost: Option<Cost>,
        taken: f64,
        status: u16,
        excerpt: &str,
    ) -> ChannelError {
        let throttle = cost.and_then(|c| c.throttle);
        let requested = cost.and_then(|c| c.requested).unwrap_or(taken);
        let header = response.retry_after();
        let wait = match (header, throttle) {
            (Some(after), _) => after,
            (None, Some(t)) if t.restore_rate > 0.0 => {
                let missing = (requested.min(t.maximum) - t.available).max(0.0);
                Duration::from_secs_f64(missing / t.restore_rate + 0.05)
            }
            // Nothing to go by: as long as an empty bucket takes to hold the cost.
            (None, _) => Duration::from_secs_f64(taken / self.current_restore_rate() + 0.05),
        };
        self.limiter.block_for(wait);
        if header.is_none() {
            if let Some(t) = throttle {
                // block_for empties the bucket; at the end of the wait the
                // channel holds what it reported plus the refill meanwhile.
                let then = (t.available + t.restore_rate * wait.as_secs_f64()).min(t.maximum);
                self.limiter.refund(then.max(0.0));
            }
        }
        let mut e = with_response(
            ChannelError::new(
                ErrorClass::RateLimited,
                "THROTTLED",
                format!("Shopify throttled the request; retry in {wait:?}"),
            ),
            status,
            excerpt,
        );
        e.retry_after = Some(wait);
        e
    }
}
