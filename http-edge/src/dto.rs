//! The JSON shapes of the API (requests and responses), with their OpenAPI schemas.

use agora_actors::order::OrderView;
use agora_actors::shipment::ShipmentView;
use serde::{Deserialize, Serialize};
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
    /// Unit price.
    pub price: MoneyDto,
    /// Units available to buy.
    pub available: u64,
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
}

/// Query of `GET /api/v1/products`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProductQuery {
    /// Words to find.
    pub q: Option<String>,
    /// Category.
    pub category: Option<String>,
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
