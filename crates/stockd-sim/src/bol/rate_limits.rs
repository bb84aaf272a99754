//! Rate limits: one token bucket per published rule, the most specific rule for a request
//! wins (<https://partnerplatform.bol.com/en/need-help/automate/api-rate-limits/>; live values
//! at <https://api.bol.com/retailer/public/ratelimits>).

use super::state::{Bol, Bucket};
use super::*;

/// Unit of a rate-limit window, as in bol's ratelimits JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeUnit {
    Seconds,
    Minutes,
    Hours,
}

/// One per-endpoint bucket: `max_capacity` requests per `time_to_live` `time_unit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// HTTP methods the rule covers (upper case).
    pub methods: Vec<String>,
    /// Path pattern; `*` matches exactly one segment. The most specific match wins.
    pub path: String,
    pub max_capacity: u32,
    pub time_to_live: u32,
    pub time_unit: TimeUnit,
}

impl RateLimit {
    pub fn new(methods: &str, path: &str, max_capacity: u32, time_unit: TimeUnit) -> RateLimit {
        RateLimit {
            methods: methods.split(',').map(|m| m.trim().to_string()).collect(),
            path: path.to_string(),
            max_capacity,
            time_to_live: 1,
            time_unit,
        }
    }

    pub(super) fn window_secs(&self) -> f64 {
        let unit = match self.time_unit {
            TimeUnit::Seconds => 1.0,
            TimeUnit::Minutes => 60.0,
            TimeUnit::Hours => 3600.0,
        };
        f64::from(self.time_to_live.max(1)) * unit
    }

    /// Number of literal segments when the rule matches, `None` otherwise.
    pub(super) fn specificity(&self, method: &str, segs: &[&str]) -> Option<usize> {
        if !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return None;
        }
        let pat: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        if pat.len() != segs.len() {
            return None;
        }
        let mut literal = 0;
        for (p, s) in pat.iter().zip(segs) {
            if *p == "*" {
                continue;
            }
            if p != s {
                return None;
            }
            literal += 1;
        }
        Some(literal)
    }
}

/// The published limits of Values for orders and process status come from the
/// older v3/v4-era copy (UNCONFIRMED for v10); the v11 PATCH and the cancellation PUT have
/// no published value and get the offers write limit (UNCONFIRMED); the returns list has none
/// either and gets the order list's (UNCONFIRMED).
pub fn default_rate_limits() -> Vec<RateLimit> {
    use TimeUnit::*;
    vec![
        RateLimit::new("PUT", "/retailer/offers/*/stock", 50, Seconds),
        RateLimit::new("PUT,DELETE", "/retailer/offers/*", 50, Seconds),
        RateLimit::new("PUT", "/retailer/offers/*/price", 50, Seconds),
        RateLimit::new("PATCH", "/retailer/offers/*", 50, Seconds),
        RateLimit::new("GET", "/retailer/offers/*", 28, Seconds),
        RateLimit::new("POST", "/retailer/offers/export", 10, Hours),
        RateLimit::new("GET", "/retailer/offers/export/*", 10, Hours),
        RateLimit::new("GET", "/retailer/orders", 25, Minutes),
        RateLimit::new("GET", "/retailer/orders/*", 25, Seconds),
        RateLimit::new("GET", "/retailer/returns", 25, Minutes),
        RateLimit::new("PUT", "/retailer/orders/cancellation", 50, Seconds),
        RateLimit::new("GET", "/shared/process-status/*", 100, Seconds),
        RateLimit::new("GET", "/shared/process-status", 100, Seconds),
        RateLimit::new("POST", "/shared/process-status", 2, Seconds),
    ]
}

impl Bol {
    /// Take one request from the most specific bucket; `Err(seconds to wait)` when empty.
    pub(super) fn rate_limit(
        &self,
        method: &str,
        segs: &[&str],
    ) -> Result<Vec<(&'static str, String)>, f64> {
        let best = self
            .config
            .rate_limits
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.specificity(method, segs).map(|s| (s, i)))
            .max_by_key(|(s, i)| (*s, std::cmp::Reverse(*i)));
        let Some((_, idx)) = best else {
            return Ok(vec![]);
        };
        let rule = &self.config.rate_limits[idx];
        let cap = f64::from(rule.max_capacity.max(1));
        let rate = cap / rule.window_secs();
        let mut st = lock(&self.state);
        let now = Instant::now();
        let b = st.buckets.entry(idx).or_insert(Bucket {
            level: cap,
            at: now,
        });
        b.level = (b.level + now.duration_since(b.at).as_secs_f64() * rate).min(cap);
        b.at = now;
        if b.level >= 1.0 {
            b.level -= 1.0;
            // Header names UNCONFIRMED for the Retailer API; values: the bucket size,
            // whole requests left, seconds until the bucket is full again.
            Ok(vec![
                ("x-ratelimit-limit", format!("{}", rule.max_capacity)),
                (
                    "x-ratelimit-remaining",
                    format!("{}", b.level.floor() as u64),
                ),
                (
                    "x-ratelimit-reset",
                    format!("{}", ((cap - b.level) / rate).ceil() as u64),
                ),
            ])
        } else {
            Err(((1.0 - b.level) / rate).max(0.001))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_rule_wins() {
        let rules = default_rate_limits();
        let segs = ["retailer", "offers", "x", "stock"];
        let best = rules
            .iter()
            .filter_map(|r| r.specificity("PUT", &segs).map(|s| (s, r.path.clone())))
            .max_by_key(|(s, _)| *s);
        assert_eq!(
            best.map(|b| b.1).as_deref(),
            Some("/retailer/offers/*/stock")
        );
        let segs = ["retailer", "orders", "cancellation"];
        assert!(rules.iter().any(|r| r.specificity("PUT", &segs) == Some(3)));
        assert_eq!(
            rules[0].specificity("GET", &["retailer", "offers", "x", "stock"]),
            None
        );
    }
}
