//! The operators' endpoint, on its own port: health, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the admin endpoint reads.
pub struct AdminState {
    /// Set once the node has recovered its store and serves.
    pub ready: AtomicBool,
    /// Whether enough of the cluster is reachable.
    pub peers_ready: Box<dyn Fn() -> bool + Send + Sync>,
    /// Renders the metrics.
    pub metrics: Option<PrometheusHandle>,
    /// The store, for counts.
    pub store: crate::store::Store,
}

/// The admin router.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) && (s.peers_ready)() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    if let Ok((entities, outbox, dead)) = s.store.counts() {
        metrics::gauge!("agora_store_entities").set(entities as f64);
        metrics::gauge!("agora_store_outbox_rows").set(outbox as f64);
        metrics::gauge!("agora_store_dead_letters").set(dead as f64);
    }
    let body = s.metrics.as_ref().map(|m| m.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
