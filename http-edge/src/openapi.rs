//! The OpenAPI document, generated from the handlers' annotations.

use crate::dto::*;
use crate::routes::{cart, inventory, notifications, orders, products, users};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The shop API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Agora shop API", description = "Every error is application/problem+json (RFC 9457)."),
    paths(
        users::register, users::login,
        products::list, products::get_one, products::create, products::update, products::archive,
        inventory::get_stock, inventory::receive, inventory::write_off,
        cart::get_cart, cart::add_item, cart::remove_item,
        orders::checkout, orders::get_one, orders::list, orders::cancel, orders::get_shipment,
        notifications::list,
    ),
    components(schemas(
        MoneyDto, RegisterRequest, UserCreated, LoginRequest, TokenResponse, ProductDto, ProductPage, FacetsDto, FacetCountDto, CreateProductRequest, UpdateProductRequest,
        QuantityRequest, StockDto, AddItemRequest, CartLineDto, CartDto, PaymentRequest, AddressDto, CheckoutRequest,
        OrderCreated, ShippingRequest, OrderShippingDto, OrderLineDto, StatusAt, OrderPaymentDto, OrderDto, OrderList, ShipmentDto, NotificationDto, NotificationList,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// The whole document: the main routes plus the payment, wallet and shipping routes.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::routes::payments::PaymentsApi::openapi());
    doc
}
