//! The JSON shapes of the API (requests and responses), with their OpenAPI schemas.

use agora_actors::order::OrderView;
use agora_actors::shipment::ShipmentView;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Formats ms since the Unix epoch as RFC 3339.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// An amount of money.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoneyDto {
    /// Minor units (paise).
    pub amount_minor: u64,
    /// ISO 4217 code (the shop uses INR).
    pub currency: String,
}

impl MoneyDto {
    /// An amount in the shop currency.
    pub fn shop(amount_minor: u64) -> Self {
        Self {
            amount_minor,
            currency: agora_actors::money::SHOP_CURRENCY.into(),
        }
    }
}

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// Email address.
    pub email: String,
    /// Password, 8 to 128 characters.
    pub password: String,
    /// Display name.
    pub name: String,
}

/// A created user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    /// The new user's id.
    pub user_id: String,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// An access token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// A product.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductDto {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: String,
    /// Free-form attributes (name → value).
    pub attributes: BTreeMap<String, String>,
    /// Unit price.
    pub price: MoneyDto,
    /// Units available to buy.
    pub available: u64,
    /// Average review rating, 0 to 5 (0 until reviewed).
    pub rating: f64,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Present and true once archived (only admin routes show archived products).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub archived: bool,
}

/// How many matching products fall on one value of a facet.
#[derive(Debug, Serialize, ToSchema)]
pub struct FacetCountDto {
    /// The value.
    pub value: String,
    /// Matching products with it.
    pub count: u64,
}

/// Facet counts of a listing, over every matching product (not only the page).
#[derive(Debug, Serialize, ToSchema)]
pub struct FacetsDto {
    /// Matching products per category, most first, then by name.
    pub category: Vec<FacetCountDto>,
}

/// `GET /api/v1/products`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    /// This page's products.
    pub items: Vec<ProductDto>,
    /// Products matching in all.
    pub total: usize,
    /// Page number (from 1).
    pub page: usize,
    /// Page size.
    pub per_page: usize,
    /// Facet counts over all matching products.
    pub facets: FacetsDto,
}

/// Query of `GET /api/v1/products`. The filters are read as text and checked by the handler,
/// so a bad value is a 422 naming the parameter (an empty value counts as absent).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProductQuery {
    /// Words to find (at most 200 characters).
    pub q: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Lowest unit price in minor units, 0..=10^12.
    pub min_price: Option<String>,
    /// Highest unit price in minor units, 0..=10^12.
    pub max_price: Option<String>,
    /// `true`: only products with units available.
    pub in_stock: Option<String>,
    /// Lowest average rating, 0 to 5.
    pub min_rating: Option<String>,
    /// relevance, price_asc, price_desc, rating or newest.
    pub sort: Option<String>,
    /// Page number, from 1.
    pub page: Option<usize>,
    /// Page size, 1 to 100.
    pub per_page: Option<usize>,
}

/// `POST /api/v1/products`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProductRequest {
    /// SKU: 1 to 64 of A-Z a-z 0-9 - _ .
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Category: a-z 0-9 -.
    pub category: String,
    /// Unit price.
    pub price: MoneyDto,
    /// Attributes: at most 32, names 1 to 64 of a-z 0-9 _ -, values 1 to 200 characters.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// `PATCH /api/v1/products/{sku}`: the fields to change (at least one); `attributes`
/// replaces every attribute.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProductRequest {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New category: a-z 0-9 -.
    pub category: Option<String>,
    /// New attributes (replacing all of them).
    pub attributes: Option<BTreeMap<String, String>>,
    /// New unit price.
    pub price: Option<MoneyDto>,
}

/// `POST /api/v1/inventory/{sku}/receive` and `/write-off`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QuantityRequest {
    /// Units.
    pub quantity: u64,
}

/// Stock of one SKU.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockDto {
    /// SKU.
    pub sku: String,
    /// available + reserved.
    pub on_hand: u64,
    /// Held for orders.
    pub reserved: u64,
    /// Can be bought.
    pub available: u64,
    /// Sold.
    pub sold: u64,
}

/// `POST /api/v1/cart/items`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddItemRequest {
    /// SKU.
    pub sku: String,
    /// Units, 1 to 100.
    pub quantity: u32,
}

/// A cart line.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartLineDto {
    /// SKU.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Current unit price.
    pub unit_price: MoneyDto,
    /// quantity × unit price.
    pub line_total: MoneyDto,
}

/// A cart.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartDto {
    /// Lines.
    pub items: Vec<CartLineDto>,
    /// Sum of the lines.
    pub total: MoneyDto,
}

/// How to pay.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum PaymentRequest {
    /// By card.
    Card {
        /// Card number, 12 to 19 digits (Luhn-valid).
        card_number: String,
    },
    /// By UPI.
    Upi {
        /// Virtual payment address, like `name@bank`.
        vpa: String,
    },
    /// From the Agora wallet.
    Wallet,
}

/// A shipping address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AddressDto {
    /// Recipient.
    pub name: String,
    /// Street line.
    pub line1: String,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166 alpha-2 country code.
    pub country: String,
}

/// `POST /api/v1/orders`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckoutRequest {
    /// How to pay.
    pub payment: PaymentRequest,
    /// Where to ship.
    pub shipping_address: AddressDto,
    /// The courier (see `GET /api/v1/shipping/quotes`); the free standard courier
    /// `agora-post` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<ShippingRequest>,
}

/// The courier chosen at checkout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShippingRequest {
    /// Courier id: `agora-post`, `swift` or `nightjar`.
    pub courier: String,
}

/// The courier of an order and its price (included in the total).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderShippingDto {
    /// Courier id.
    pub courier: String,
    /// Shipping price.
    pub price: MoneyDto,
}

/// A placed order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderCreated {
    /// Order id.
    pub order_id: String,
    /// Status when answered.
    pub status: String,
}

/// An order line.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderLineDto {
    /// SKU.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Unit price in minor units at checkout.
    pub unit_price_minor: u64,
}

/// A status change.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusAt {
    /// Status.
    pub status: String,
    /// When (RFC 3339).
    pub at: String,
}

/// An order's payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPaymentDto {
    /// none, processing, succeeded, failed, refunding, refunded.
    pub status: String,
    /// card, upi or wallet.
    pub method: String,
}

/// An order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDto {
    /// Order id.
    pub order_id: String,
    /// Status.
    pub status: String,
    /// Lines.
    pub lines: Vec<OrderLineDto>,
    /// Total.
    pub total: MoneyDto,
    /// Payment.
    pub payment: OrderPaymentDto,
    /// Shipment id, once confirmed.
    pub shipment_id: Option<String>,
    /// Status history, oldest first.
    pub history: Vec<StatusAt>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// The courier and shipping price (included in `total`).
    pub shipping: OrderShippingDto,
    /// Refunded so far (refunds of a delivered order).
    pub refunded: MoneyDto,
}

impl From<OrderView> for OrderDto {
    fn from(v: OrderView) -> Self {
        Self {
            order_id: v.order_id,
            status: v.status,
            lines: v
                .lines
                .into_iter()
                .map(|l| OrderLineDto {
                    sku: l.sku,
                    quantity: l.quantity,
                    unit_price_minor: l.unit_price_minor,
                })
                .collect(),
            total: MoneyDto::shop(v.total_minor),
            payment: OrderPaymentDto {
                status: v.payment_status,
                method: v.payment_method,
            },
            shipment_id: v.shipment_id,
            history: v
                .history
                .into_iter()
                .map(|(status, at)| StatusAt {
                    status,
                    at: rfc3339(at),
                })
                .collect(),
            cancel_reason: v.cancel_reason,
            shipping: OrderShippingDto {
                courier: v.shipping.courier,
                price: MoneyDto::shop(v.shipping.price_minor),
            },
            refunded: MoneyDto::shop(
                v.refunds
                    .iter()
                    .filter(|r| r.completed_at_ms.is_some())
                    .map(|r| r.amount_minor)
                    .sum(),
            ),
        }
    }
}

/// A list of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    /// Newest first.
    pub items: Vec<OrderDto>,
}

/// A shipment.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShipmentDto {
    /// Shipment id.
    pub shipment_id: String,
    /// Order id.
    pub order_id: String,
    /// Status.
    pub status: String,
    /// Courier tracking number.
    pub tracking: Option<String>,
    /// Status history.
    pub events: Vec<StatusAt>,
    /// The courier.
    pub courier: String,
    /// Delivery attempts made.
    pub delivery_attempts: u32,
}

impl From<ShipmentView> for ShipmentDto {
    fn from(v: ShipmentView) -> Self {
        Self {
            shipment_id: v.shipment_id,
            order_id: v.order_id,
            status: v.status,
            tracking: v.tracking,
            events: v
                .events
                .into_iter()
                .map(|(status, at)| StatusAt {
                    status,
                    at: rfc3339(at),
                })
                .collect(),
            courier: v.courier,
            delivery_attempts: v.attempts,
        }
    }
}

/// A notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationDto {
    /// email, sms or whatsapp.
    pub channel: String,
    /// The event.
    pub kind: String,
    /// The order.
    pub order_id: String,
    /// When (RFC 3339).
    pub at: String,
}

/// The caller's notifications.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    /// Newest first.
    pub items: Vec<NotificationDto>,
}
