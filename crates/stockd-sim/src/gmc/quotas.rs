//! Per-method quotas per minute and per day, and `quotas.list`
//! (<https://developers.google.com/merchant/api/guides/quotas-limits>).

use super::*;

/// Every quota method, with the sub-API and REST path reported by `quotas.list`.
pub(super) const METHODS: &[(&str, &str, &str)] = &[
    (
        "productInputs.insert",
        "products",
        "v1/{parent=accounts/*}/productInputs:insert",
    ),
    (
        "productInputs.patch",
        "products",
        "v1/{productInput.name=accounts/*/productInputs/*}",
    ),
    (
        "productInputs.delete",
        "products",
        "v1/{name=accounts/*/productInputs/*}",
    ),
    (
        "products.get",
        "products",
        "v1/{name=accounts/*/products/*}",
    ),
    (
        "products.list",
        "products",
        "v1/{parent=accounts/*}/products",
    ),
    (
        "localInventories.insert",
        "inventories",
        "v1/{parent=accounts/*/products/*}/localInventories:insert",
    ),
    (
        "localInventories.list",
        "inventories",
        "v1/{parent=accounts/*/products/*}/localInventories",
    ),
    (
        "localInventories.delete",
        "inventories",
        "v1/{name=accounts/*/products/*/localInventories/*}",
    ),
    ("quotas.list", "quota", "v1/{parent=accounts/*}/quotas"),
];

impl Gmc {
    /// Charge one call to a method's per-minute and per-day quota.
    pub(super) fn charge(&self, method: &'static str) -> Option<Response> {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let q = st.quotas.entry(method).or_default();
        while q
            .minute
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            q.minute.pop_front();
        }
        if q.day_start.is_none_or(|s| now.duration_since(s) >= DAY) {
            q.day_start = Some(now);
            q.day_count = 0;
        }
        if q.day_count >= u64::from(self.config.requests_per_day) {
            return Some(quota_error(
                "quota/daily_limit_exceeded",
                &format!("Daily quota for {method} exceeded."),
            ));
        }
        if q.minute.len() >= self.config.requests_per_minute as usize {
            return Some(quota_error(
                "quota/request_rate_too_high",
                &format!("Per-minute quota for {method} exceeded."),
            ));
        }
        q.minute.push_back(now);
        q.day_count += 1;
        None
    }

    pub(super) fn list_quotas(&self) -> Response {
        let now = Instant::now();
        let a = self.config.account_id;
        let st = lock(&self.state);
        let groups: Vec<Value> = METHODS
            .iter()
            .map(|(m, subapi, path)| {
                let usage = st
                    .quotas
                    .get(m)
                    .filter(|q| q.day_start.is_some_and(|s| now.duration_since(s) < DAY))
                    .map(|q| q.day_count)
                    .unwrap_or(0);
                json!({
                    "name": format!("accounts/{a}/quotas/{m}"),
                    "quotaUsage": usage.to_string(),
                    "quotaLimit": self.config.requests_per_day.to_string(),
                    "quotaMinuteLimit": self.config.requests_per_minute.to_string(),
                    "methodDetails": [{"method": m, "version": "v1", "subapi": subapi, "path": path}],
                })
            })
            .collect();
        Json(json!({"quotaGroups": groups})).into_response()
    }
}
