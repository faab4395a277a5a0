//! Request metrics: how many requests each route answered, with which status, and how long
//! each took, for an operator's latency and error-rate graphs.

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Label, SharedString};
use tokio::time::Instant;

/// The method as a label value (a fixed set, so the label cannot grow without bound).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The status as a label value, without an allocation for the usual ones.
fn status_label(status: StatusCode) -> SharedString {
    let fixed = match status.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        413 => "413",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => return SharedString::from(status.as_u16().to_string()),
    };
    SharedString::const_str(fixed)
}

/// Records `agora_http_request_seconds` for every request (its `_count` is the request
/// count), labelled by method, route template (never the raw path: ids in it would make a
/// label value per entity) and status. The time is from routing to the response's head, on
/// the runtime's clock (simulated time in the simulator).
pub async fn record(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(SharedString::const_str("unmatched"), |p| {
            SharedString::from(p.as_str().to_owned())
        });
    let response = next.run(req).await;
    let labels = vec![
        Label::from_static_parts("method", method),
        Label::new("route", route),
        Label::new("status", status_label(response.status())),
    ];
    metrics::histogram!("agora_http_request_seconds", labels)
        .record(started.elapsed().as_secs_f64());
    response
}
