//! The HTTP endpoints operators scrape and probe: `/metrics` (Prometheus text format),
//! `/healthz` (the process is alive) and `/readyz` (shoppers running and the sink able to
//! deliver; 503 with the reason otherwise); and, when there are files to serve, the pull API
//! ([`crate::api`]) on the same address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder as _, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::metrics::Health;
use crate::settings::{Text, quoted};

/// An IP address and port.
fn address() -> Text<SocketAddr> {
    Text::new(
        "HOST:PORT",
        "an address like 0.0.0.0:9464 or 127.0.0.1:0",
        |s| {
            s.trim()
                .parse::<SocketAddr>()
                .map_err(|_| format!("`{s}` is not an address like 0.0.0.0:9464 or 127.0.0.1:0"))
        },
        |addr| quoted(&addr.to_string()),
    )
}

crate::section! {
    /// The HTTP endpoints.
    pub struct MetricsSettings in "metrics" {
        /// Address of the /metrics, /healthz and /readyz endpoints and of the pull API
        /// (port 0: any free port).
        pub addr: SocketAddr = address(), flag = "--metrics-addr";
    }
}

#[derive(Clone)]
struct Endpoints {
    registry: Registry,
    health: Arc<Health>,
}

async fn metrics(State(state): State<Endpoints>) -> impl IntoResponse {
    let mut body = Vec::with_capacity(16 * 1024);
    match TextEncoder::new().encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Endpoints>) -> impl IntoResponse {
    match state.health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// Serves the endpoints, and the pull API when there is one, on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    health: Arc<Health>,
    api: Option<Arc<Api>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Endpoints { registry, health });
    if let Some(api) = api {
        app = app.merge(crate::api::router(api));
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
