//! Prometheus metrics, written by hand in the text exposition format:
//! HTTP requests by method, route template and status; request latency as a
//! histogram in seconds; events by status; refused event requests by code;
//! and which storage backend runs. Label values come from fixed sets (route
//! templates, known methods, error codes), so the series count is bounded.

use crate::api::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use stockd_core::{EventResult, EventStatus};

/// Upper bounds of the latency histogram buckets, in seconds.
const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of requests that matched no route.
pub const ROUTE_UNMATCHED: &str = "unmatched";

#[derive(Default)]
struct Histogram {
    /// Count per bucket (not cumulative); the last is +Inf.
    buckets: [u64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let at = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[at] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

#[derive(Default)]
struct Counters {
    /// (method, route template, status) → requests.
    requests: BTreeMap<(&'static str, String, u16), u64>,
    /// route template → latency.
    latency: BTreeMap<String, Histogram>,
    events_applied: u64,
    events_duplicate: u64,
    events_quarantined: u64,
    /// error code → refused event requests.
    event_requests_refused: BTreeMap<&'static str, u64>,
}

/// The metrics of one server.
pub struct Metrics {
    backend: &'static str,
    counters: Mutex<Counters>,
}

impl Metrics {
    pub fn new(backend: &'static str) -> Metrics {
        Metrics {
            backend,
            counters: Mutex::new(Counters::default()),
        }
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while holding the lock cannot leave the counters inconsistent
        // in a way that matters for metrics, so a poisoned lock is used as is.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record_request(&self, method: &Method, route: &str, status: u16, latency: Duration) {
        let mut c = self.counters();
        *c.requests
            .entry((method_label(method), route.to_string(), status))
            .or_default() += 1;
        c.latency
            .entry(route.to_string())
            .or_default()
            .observe(latency.as_secs_f64());
    }

    pub fn record_event_results(&self, results: &[EventResult]) {
        let mut c = self.counters();
        for result in results {
            match result.status {
                EventStatus::Applied => c.events_applied += 1,
                EventStatus::Duplicate => c.events_duplicate += 1,
                EventStatus::Quarantined => c.events_quarantined += 1,
            }
        }
    }

    pub fn record_event_request_refused(&self, code: &'static str) {
        *self
            .counters()
            .event_requests_refused
            .entry(code)
            .or_default() += 1;
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let c = self.counters();
        let mut out = String::new();
        let w = &mut out;
        // Writing to a String cannot fail.
        let _ = writeln!(
            w,
            "# HELP stockd_http_requests_total HTTP requests answered."
        );
        let _ = writeln!(w, "# TYPE stockd_http_requests_total counter");
        for ((method, route, status), n) in &c.requests {
            let _ = writeln!(
                w,
                "stockd_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let _ = writeln!(
            w,
            "# HELP stockd_http_request_duration_seconds Time to answer an HTTP request."
        );
        let _ = writeln!(w, "# TYPE stockd_http_request_duration_seconds histogram");
        for (route, h) in &c.latency {
            let route = escape(route);
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS_SECONDS.iter().enumerate() {
                cumulative += h.buckets[i];
                let _ = writeln!(
                    w,
                    "stockd_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                w,
                "stockd_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                w,
                "stockd_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum_seconds
            );
            let _ = writeln!(
                w,
                "stockd_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(w, "# HELP stockd_events_total Events received, by result.");
        let _ = writeln!(w, "# TYPE stockd_events_total counter");
        for (status, n) in [
            ("applied", c.events_applied),
            ("duplicate", c.events_duplicate),
            ("quarantined", c.events_quarantined),
        ] {
            let _ = writeln!(w, "stockd_events_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            w,
            "# HELP stockd_event_requests_refused_total Event requests refused whole, by error code."
        );
        let _ = writeln!(w, "# TYPE stockd_event_requests_refused_total counter");
        for (code, n) in &c.event_requests_refused {
            let _ = writeln!(
                w,
                "stockd_event_requests_refused_total{{code=\"{code}\"}} {n}"
            );
        }
        let _ = writeln!(w, "# HELP stockd_store_info The storage backend in use.");
        let _ = writeln!(w, "# TYPE stockd_store_info gauge");
        let _ = writeln!(w, "stockd_store_info{{backend=\"{}\"}} 1", self.backend);
        let _ = writeln!(w, "# HELP stockd_build_info The running version.");
        let _ = writeln!(w, "# TYPE stockd_build_info gauge");
        let _ = writeln!(
            w,
            "stockd_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}

/// Known methods by name; anything else is "other" so clients cannot create series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

pub(crate) fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: counts and times every request under its route template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| ROUTE_UNMATCHED.to_string());
    let response = next.run(request).await;
    state.metrics.record_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_and_cumulative_buckets() {
        let m = Metrics::new("sqlite");
        m.record_request(
            &Method::GET,
            "/v1/stock/{sku}",
            200,
            Duration::from_millis(3),
        );
        m.record_request(
            &Method::GET,
            "/v1/stock/{sku}",
            200,
            Duration::from_millis(30),
        );
        m.record_request(
            &Method::from_bytes(b"BREW").unwrap(),
            ROUTE_UNMATCHED,
            405,
            Duration::ZERO,
        );
        let text = m.render();
        for expect in [
            "stockd_http_requests_total{method=\"GET\",route=\"/v1/stock/{sku}\",status=\"200\"} 2",
            "stockd_http_requests_total{method=\"other\",route=\"unmatched\",status=\"405\"} 1",
            "stockd_http_request_duration_seconds_bucket{route=\"/v1/stock/{sku}\",le=\"0.005\"} 1",
            "stockd_http_request_duration_seconds_bucket{route=\"/v1/stock/{sku}\",le=\"0.05\"} 2",
            "stockd_http_request_duration_seconds_bucket{route=\"/v1/stock/{sku}\",le=\"+Inf\"} 2",
            "stockd_http_request_duration_seconds_count{route=\"/v1/stock/{sku}\"} 2",
            "stockd_events_total{status=\"applied\"} 0",
            "stockd_store_info{backend=\"sqlite\"} 1",
        ] {
            assert!(text.contains(expect), "missing {expect} in\n{text}");
        }
    }
}
