//! The routes of the shop API, one module per resource.

pub mod cart;
pub mod inventory;
pub mod me;
pub mod notifications;
pub mod orders;
pub mod paging;
pub mod payments;
pub mod products;
pub mod reviews;
pub mod session;
pub mod users;
pub mod validate;

use crate::problem::Problem;
use crate::EdgeState;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use std::sync::Arc;

/// Every route of the shop API. Each one is in the OpenAPI document (`crate::openapi`) unless
/// it is listed in `crate::openapi::UNDOCUMENTED_ROUTES`; a test checks it.
pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/docs", get(crate::docs::redirect))
        .route("/docs/", get(crate::docs::index))
        .route("/docs/{*file}", get(crate::docs::file))
        .route("/api/v1/users", post(users::register))
        .route("/api/v1/auth/login", post(users::login))
        .route("/api/v1/auth/refresh", post(session::refresh))
        .route("/api/v1/auth/logout", post(session::logout))
        .route("/api/v1/me", get(me::get_me).patch(me::patch_me))
        .route(
            "/api/v1/products",
            get(products::list).post(products::create),
        )
        .route(
            "/api/v1/products/{sku}",
            get(products::get_one).patch(products::update),
        )
        .route("/api/v1/products/{sku}/archive", post(products::archive))
        .route(
            "/api/v1/products/{sku}/reviews",
            get(reviews::list).post(reviews::submit),
        )
        .route(
            "/api/v1/products/{sku}/reviews/mine",
            get(reviews::get_mine).put(reviews::put_mine),
        )
        .route(
            "/api/v1/products/{sku}/reviews/{review_id}/hide",
            post(reviews::hide),
        )
        .route(
            "/api/v1/products/{sku}/reviews/{review_id}/unhide",
            post(reviews::unhide),
        )
        .route("/api/v1/inventory/{sku}", get(inventory::get_stock))
        .route("/api/v1/inventory/{sku}/receive", post(inventory::receive))
        .route(
            "/api/v1/inventory/{sku}/write-off",
            post(inventory::write_off),
        )
        .route("/api/v1/cart", get(cart::get_cart))
        .route("/api/v1/cart/items", post(cart::add_item))
        .route("/api/v1/cart/items/{sku}", delete(cart::remove_item))
        .route("/api/v1/orders", get(orders::list).post(orders::checkout))
        .route("/api/v1/orders/{order_id}", get(orders::get_one))
        .route("/api/v1/orders/{order_id}/cancel", post(orders::cancel))
        .route("/api/v1/shipments/{shipment_id}", get(orders::get_shipment))
        .route("/api/v1/notifications", get(notifications::list))
        .merge(payment_routes())
}

/// The payment, wallet and shipping-quote routes.
fn payment_routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/api/v1/payments/webhook", post(payments::webhook_in))
        .route(
            "/api/v1/orders/{order_id}/refunds",
            post(payments::request_refund),
        )
        .route(
            "/api/v1/orders/{order_id}/payments",
            get(payments::payment_history),
        )
        .route("/api/v1/me/wallet", get(payments::get_wallet))
        .route("/api/v1/me/wallet/top-up", post(payments::top_up))
        .route("/api/v1/shipping/quotes", get(payments::quotes))
}

/// Unknown routes answer a 404 problem.
pub async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

/// Known routes with another method answer a 405 problem.
pub async fn method_not_allowed() -> Problem {
    Problem::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not take that method",
    )
}

/// A panic in a handler becomes a logged 500 problem (it is a bug, never expected).
pub fn panic_to_problem(_err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Problem::internal("a handler panicked").into_response()
}
