//! Cross-origin calls (CORS): a browser storefront on another origin may call the shop API
//! only if its origin is in the allowlist (none by default). Preflights are answered for the
//! methods and headers the API uses, and the headers a storefront reads are exposed.

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, Method};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer allowing `origins` (exact `scheme://host[:port]` strings, already
/// validated); with none, no origin is allowed.
pub fn layer(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            IF_MATCH,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([
            ETAG,
            LOCATION,
            RETRY_AFTER,
            HeaderName::from_static(crate::created::IDEMPOTENT_REPLAYED),
        ])
        .max_age(PREFLIGHT_MAX_AGE)
}
