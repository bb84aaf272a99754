//! The connectors' transport in a simulation: each request calls the
//! simulator named by its URL's host, in process.

use async_trait::async_trait;
use axum::body::Body;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use stockd_channels::{ChannelError, ErrorClass, HttpRequest, HttpResponse, Transport};
use stockd_sim::InMemorySim;

pub struct InMemoryTransport {
    /// Simulators by base URL (`scheme://host`).
    sims: BTreeMap<String, Arc<InMemorySim>>,
    trace: Option<Arc<Trace>>,
}

impl InMemoryTransport {
    pub fn new(
        sims: BTreeMap<String, Arc<InMemorySim>>,
        trace: Option<Arc<Trace>>,
    ) -> InMemoryTransport {
        InMemoryTransport { sims, trace }
    }
}

/// The file `--trace` writes, shared by every run of one invocation.
pub type TraceFile = Arc<Mutex<std::io::BufWriter<std::fs::File>>>;

/// One run's trace: every channel request and webhook delivery, a line each
/// with its simulated milliseconds — two runs of a seed that should be the
/// same can be compared line by line, and the first line that differs is
/// where they parted.
pub struct Trace {
    start: tokio::time::Instant,
    file: TraceFile,
}

impl Trace {
    /// Starts a run's section of the file (call inside the run's runtime).
    pub fn start(file: TraceFile, heading: &str) -> Arc<Trace> {
        let trace = Trace {
            start: tokio::time::Instant::now(),
            file,
        };
        trace.line(format_args!("# {heading}"));
        Arc::new(trace)
    }

    /// One event at the current simulated time.
    pub fn event(&self, what: std::fmt::Arguments<'_>) {
        let ms = self.start.elapsed().as_millis();
        self.line(format_args!("{ms} {what}"));
    }

    fn line(&self, text: std::fmt::Arguments<'_>) {
        if let Ok(mut file) = self.file.lock() {
            // A trace is a diagnostic: a failed write must not stop the day.
            let _ = writeln!(file, "{text}");
        }
    }
}

fn refused(message: String) -> ChannelError {
    ChannelError::new(ErrorClass::Retryable, "network", message)
}

#[async_trait]
impl Transport for InMemoryTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ChannelError> {
        let uri: axum::http::Uri = request
            .url
            .parse()
            .map_err(|e| refused(format!("{}: {e}", request.url)))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(refused(format!("{}: not an absolute URL", request.url)));
        };
        let base = format!("{scheme}://{authority}");
        let sim = self
            .sims
            .get(&base)
            .ok_or_else(|| refused(format!("no simulator at {base}")))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let traced = self
            .trace
            .as_ref()
            .map(|trace| (trace, format!("{} {}", request.method, request.url)));
        let mut builder = axum::http::Request::builder()
            .method(request.method)
            .uri(path);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let outgoing = builder
            .header("host", authority.as_str())
            .body(Body::from(request.body))
            .map_err(|e| refused(e.to_string()))?;
        let response = sim.handle(outgoing).await;
        let status = response.status().as_u16();
        if let Some((trace, what)) = traced {
            trace.event(format_args!("{what} {status}"));
        }
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| refused(e.to_string()))?
            .to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}
