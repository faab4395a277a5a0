//! Agora's shopper-facing REST API on axum. It reaches entities only through the narrow
//! `EntityClient` trait, so it runs the same over one node, a cluster or the simulator.

pub mod auth;
pub mod catalog;
pub mod cors;
pub mod created;
pub mod docs;
pub mod dto;
pub mod extract;
pub mod limits;
pub mod lockout;
pub mod observe;
pub mod openapi;
pub mod precondition;
pub mod problem;
pub mod routes;
#[cfg(test)]
mod testing;
pub mod webhook;

use agora_actors::client::EntityClient;
use agora_actors::seams::{BlockingPool, Clock, RandomSource};
use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

pub use catalog::{Catalog, CatalogEntry};

/// Runs `f` on `pool` and awaits its result.
pub async fn run_blocking<T: Send + 'static>(
    pool: &Arc<dyn BlockingPool>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, problem::Problem> {
    agora_actors::seams::run_blocking(pool, f)
        .await
        .map_err(|_| problem::Problem::internal("blocking job dropped"))
}

/// Limits and timings of the edge.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Access token lifetime.
    pub token_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
    /// How long a checkout waits for the stock answer before answering 201 PENDING.
    pub settle_wait: Duration,
    /// The secret payment webhooks are signed with (webhooks are refused without one).
    pub webhook_secret: Option<Vec<u8>>,
    /// How far a webhook's signed timestamp may be from the edge's clock, in seconds.
    pub webhook_tolerance_secs: u64,
    /// Origins whose browser pages may call the API (CORS); none when empty.
    pub cors_origins: Vec<String>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            token_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            settle_wait: Duration::from_secs(5),
            webhook_secret: None,
            webhook_tolerance_secs: webhook::DEFAULT_TOLERANCE_SECS,
            cors_origins: Vec::new(),
        }
    }
}

/// Everything the handlers share.
pub struct EdgeState {
    /// The way into entities.
    pub client: Arc<dyn EntityClient>,
    /// The product listing.
    pub catalog: Arc<dyn Catalog>,
    /// Token keys.
    pub keys: auth::JwtKeys,
    /// The bounded gate of password hashing.
    pub passwords: auth::Passwords,
    /// Login lockouts per (account, client address).
    pub lockouts: lockout::Lockouts,
    /// Where blocking work runs.
    pub blocking: Arc<dyn BlockingPool>,
    /// Time seam.
    pub clock: Arc<dyn Clock>,
    /// Random seam (password salts).
    pub rng: Arc<dyn RandomSource>,
    /// Limits.
    pub config: EdgeConfig,
    /// Rate limits (`None`: off).
    pub limiter: Option<limits::Limiter>,
    /// The payment gateway's card tokenisation: checkout exchanges card numbers here.
    pub cards: Arc<dyn agora_actors::gateway::CardTokeniser>,
}

/// The shop API router.
pub fn router(state: Arc<EdgeState>) -> Router {
    let limit = state.config.body_limit;
    let api = routes::routes()
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::enforce,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            routes::panic_to_problem,
        ))
        .layer(axum::middleware::from_fn(observe::record));
    // Without allowed origins there is no CORS at all (an OPTIONS answers 405 as before).
    let api = match state.config.cors_origins.is_empty() {
        true => api,
        false => api.layer(cors::layer(&state.config.cors_origins)),
    };
    api.with_state(state)
}
