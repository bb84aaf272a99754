//! The connectors' transport in a simulation: each request calls the
//! simulator named by its URL's host, in process.

use async_trait::async_trait;
use axum::body::Body;
use std::collections::BTreeMap;
use std::sync::Arc;
use stockd_channels::{ChannelError, ErrorClass, HttpRequest, HttpResponse, Transport};
use stockd_sim::InMemorySim;

pub struct InMemoryTransport {
    /// Simulators by base URL (`scheme://host`).
    sims: BTreeMap<String, Arc<InMemorySim>>,
}

impl InMemoryTransport {
    pub fn new(sims: BTreeMap<String, Arc<InMemorySim>>) -> InMemoryTransport {
        InMemoryTransport { sims }
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
