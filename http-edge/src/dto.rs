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
#[schema(examples(json!({"amount_minor": 249900, "currency": "INR"})))]
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
#[schema(examples(json!({"email": "asha@example.com", "password": "correct-horse-battery", "name": "Asha Rao"})))]
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
#[schema(examples(json!({"user_id": "4c3e2a0b-9c4f-5d7e-8a1b-3f2e1d0c9b8a"})))]
pub struct UserCreated {
    /// The new user's id.
    pub user_id: String,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(examples(json!({"email": "asha@example.com", "password": "correct-horse-battery"})))]
pub struct LoginRequest {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// An access token and the refresh token that renews it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIuLi4ifQ.sig", "refresh_token": "3f0c6f1e-…-…:q8Zr…", "token_type": "Bearer", "expires_in": 900})))]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// Opaque refresh token: exchange it at `/auth/refresh` (once: each use rotates it).
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// A product.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"sku": "HP-ANC-100", "name": "Wireless Headphones", "description": "Over-ear, noise cancelling, 30 h battery.", "category": "audio", "attributes": {"colour": "black"}, "price": {"amount_minor": 249900, "currency": "INR"}, "available": 42, "rating": 4.5, "review_count": 12, "created_at": "2026-01-05T10:00:00.000Z"})))]
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
    /// Average review rating, 0 to 5 (0 until reviewed), over the visible reviews.
    pub rating: f64,
    /// Visible reviews the rating is the average of.
    pub review_count: u64,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Present and true once archived (only admin routes show archived products).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub archived: bool,
}

/// How many matching products fall on one value of a facet.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"value": "audio", "count": 7})))]
pub struct FacetCountDto {
    /// The value.
    pub value: String,
    /// Matching products with it.
    pub count: u64,
}

/// Facet counts of a listing, over every matching product (not only the page).
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"category": [{"value": "audio", "count": 7}, {"value": "kitchen", "count": 3}]})))]
pub struct FacetsDto {
    /// Matching products per category, most first, then by name.
    pub category: Vec<FacetCountDto>,
}

/// `GET /api/v1/products`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"items": [{"sku": "HP-ANC-100", "name": "Wireless Headphones", "description": "Over-ear, noise cancelling, 30 h battery.", "category": "audio", "attributes": {"colour": "black"}, "price": {"amount_minor": 249900, "currency": "INR"}, "available": 42, "rating": 4.5, "review_count": 12, "created_at": "2026-01-05T10:00:00.000Z"}], "total": 1, "page": 1, "per_page": 20, "facets": {"category": [{"value": "audio", "count": 1}]}})))]
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
#[schema(examples(json!({"sku": "HP-ANC-100", "name": "Wireless Headphones", "description": "Over-ear, noise cancelling, 30 h battery.", "category": "audio", "price": {"amount_minor": 249900, "currency": "INR"}, "attributes": {"colour": "black"}})))]
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
#[schema(examples(json!({"price": {"amount_minor": 229900, "currency": "INR"}, "description": "Now with a travel case."})))]
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
#[schema(examples(json!({"quantity": 25})))]
pub struct QuantityRequest {
    /// Units.
    pub quantity: u64,
}

/// Stock of one SKU.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"sku": "HP-ANC-100", "on_hand": 45, "reserved": 3, "available": 42, "sold": 118})))]
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
#[schema(examples(json!({"sku": "HP-ANC-100", "quantity": 1})))]
pub struct AddItemRequest {
    /// SKU.
    pub sku: String,
    /// Units, 1 to 100.
    pub quantity: u32,
}

/// A cart line.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"sku": "HP-ANC-100", "quantity": 2, "unit_price": {"amount_minor": 249900, "currency": "INR"}, "line_total": {"amount_minor": 499800, "currency": "INR"}})))]
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
#[schema(examples(json!({"items": [{"sku": "HP-ANC-100", "quantity": 2, "unit_price": {"amount_minor": 249900, "currency": "INR"}, "line_total": {"amount_minor": 499800, "currency": "INR"}}], "total": {"amount_minor": 499800, "currency": "INR"}})))]
pub struct CartDto {
    /// Lines.
    pub items: Vec<CartLineDto>,
    /// Sum of the lines.
    pub total: MoneyDto,
}

/// How to pay. A card number is exchanged at once for the payment gateway's token: Agora
/// keeps only the token, the last four digits and a fingerprint, never the number.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "method", rename_all = "lowercase")]
#[schema(examples(json!({"method": "card", "card_number": "4242424242424242"})))]
pub enum PaymentRequest {
    /// By card.
    Card {
        /// Card number, 12 to 19 digits (Luhn-valid). It is sent to the payment gateway for
        /// a token at checkout and never stored: orders and payments show its last four
        /// digits.
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

/// Never shows a card number (requests may reach a log through their `Debug`).
impl std::fmt::Debug for PaymentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PaymentRequest::Card { .. } => f.write_str("Card { card_number: <redacted> }"),
            PaymentRequest::Upi { vpa } => f.debug_struct("Upi").field("vpa", vpa).finish(),
            PaymentRequest::Wallet => f.write_str("Wallet"),
        }
    }
}

/// A shipping address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"name": "Asha Rao", "line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"})))]
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
#[schema(examples(json!({"payment": {"method": "upi", "vpa": "asha@okbank"}, "shipping_address": {"name": "Asha Rao", "line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"}})))]
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
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"courier": "swift"})))]
pub struct ShippingRequest {
    /// Courier id: `agora-post`, `swift` or `nightjar`.
    pub courier: String,
}

/// The courier of an order and its price (included in the total).
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"courier": "swift", "price": {"amount_minor": 9900, "currency": "INR"}})))]
pub struct OrderShippingDto {
    /// Courier id.
    pub courier: String,
    /// Shipping price.
    pub price: MoneyDto,
}

/// A placed order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"order_id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "status": "AWAITING_PAYMENT"})))]
pub struct OrderCreated {
    /// Order id.
    pub order_id: String,
    /// Status when answered.
    pub status: String,
}

/// An order line.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"sku": "HP-ANC-100", "quantity": 1, "unit_price_minor": 249900})))]
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
#[schema(examples(json!({"status": "SHIPPED", "at": "2026-01-05T12:00:00.000Z"})))]
pub struct StatusAt {
    /// Status.
    pub status: String,
    /// When (RFC 3339).
    pub at: String,
}

/// An order's payment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"status": "succeeded", "method": "card"})))]
pub struct OrderPaymentDto {
    /// none, processing, succeeded, failed, refunding, refunded.
    pub status: String,
    /// card, upi or wallet.
    pub method: String,
}

/// An order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"order_id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "status": "DELIVERED", "lines": [{"sku": "HP-ANC-100", "quantity": 1, "unit_price_minor": 249900}], "total": {"amount_minor": 249900, "currency": "INR"}, "payment": {"status": "succeeded", "method": "card"}, "shipment_id": "shp-7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "history": [{"status": "PENDING", "at": "2026-01-05T10:00:00.000Z"}, {"status": "CONFIRMED", "at": "2026-01-05T10:00:01.000Z"}, {"status": "SHIPPED", "at": "2026-01-05T12:00:00.000Z"}, {"status": "DELIVERED", "at": "2026-01-06T09:30:00.000Z"}], "cancel_reason": null})))]
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
#[schema(examples(json!({"items": [{"order_id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "status": "DELIVERED", "lines": [{"sku": "HP-ANC-100", "quantity": 1, "unit_price_minor": 249900}], "total": {"amount_minor": 249900, "currency": "INR"}, "payment": {"status": "succeeded", "method": "card"}, "shipment_id": "shp-7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "history": [{"status": "PENDING", "at": "2026-01-05T10:00:00.000Z"}, {"status": "CONFIRMED", "at": "2026-01-05T10:00:01.000Z"}, {"status": "SHIPPED", "at": "2026-01-05T12:00:00.000Z"}, {"status": "DELIVERED", "at": "2026-01-06T09:30:00.000Z"}], "cancel_reason": null}], "next_cursor": "016f00000000000000e6"})))]
pub struct OrderList {
    /// Newest first.
    pub items: Vec<OrderDto>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query of a list read by cursor, newest first.
#[derive(Debug, Deserialize)]
pub struct CursorQuery {
    /// Page size, 1..=100 (default 20).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page (absent for the newest page).
    pub cursor: Option<String>,
}

/// A shipment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"shipment_id": "shp-7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "order_id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "status": "IN_TRANSIT", "tracking": "AGR123456789IN", "events": [{"status": "CREATED", "at": "2026-01-05T10:00:01.000Z"}, {"status": "PICKED_UP", "at": "2026-01-05T12:00:00.000Z"}, {"status": "IN_TRANSIT", "at": "2026-01-05T18:00:00.000Z"}]})))]
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
#[schema(examples(json!({"channel": "email", "kind": "ORDER_SHIPPED", "order_id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "at": "2026-01-05T12:00:00.000Z"})))]
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
#[schema(examples(json!({"items": [{"channel": "email", "kind": "ORDER_SHIPPED", "order_id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "at": "2026-01-05T12:00:00.000Z"}], "next_cursor": null})))]
pub struct NotificationList {
    /// Newest first.
    pub items: Vec<NotificationDto>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/auth/refresh` and `POST /api/v1/auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"refresh_token": "3f0c6f1e-…-…:q8Zr…"})))]
pub struct RefreshRequest {
    /// The refresh token from the login or the last refresh.
    pub refresh_token: String,
}

/// A saved address on the profile.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"label": "home", "name": "Asha", "line1": "1 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"})))]
pub struct SavedAddressDto {
    /// The shopper's name for it, 1..=40 characters ("home").
    pub label: String,
    /// Recipient.
    pub name: String,
    /// Street line.
    pub line1: String,
    /// City.
    pub city: String,
    /// Postal code, 1..=16 letters, digits, spaces or dashes.
    pub postal_code: String,
    /// ISO 3166 alpha-2 country code.
    pub country: String,
}

/// The caller's profile.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"user_id": "5b0e…", "email": "asha@example.com", "name": "Asha", "role": "customer", "phone": "+919876543210",
    "addresses": [{"label": "home", "name": "Asha", "line1": "1 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"}],
    "notification_channels": ["email", "sms"], "wallet_minor": 500000})))]
pub struct ProfileDto {
    /// User id.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// `customer` or `admin`.
    pub role: String,
    /// Phone number (E.164), if given.
    pub phone: Option<String>,
    /// Saved addresses (at most 5).
    pub addresses: Vec<SavedAddressDto>,
    /// Channels notifications go out on: `email`, `sms`, `whatsapp`.
    pub notification_channels: Vec<String>,
    /// Wallet balance in minor units.
    pub wallet_minor: u64,
}

/// `PATCH /api/v1/me`: absent fields keep their value; `"phone": null` removes the phone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"phone": "+919876543210", "notification_channels": ["email", "whatsapp"]})))]
pub struct ProfilePatchDto {
    /// Display name, 1..=200 characters.
    pub name: Option<String>,
    /// Phone number in E.164 (`+` and 8 to 15 digits), or null to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    /// The whole list of saved addresses (at most 5).
    pub addresses: Option<Vec<SavedAddressDto>>,
    /// 1 to 3 distinct channels among `email`, `sms`, `whatsapp` (sms and whatsapp need a
    /// phone).
    pub notification_channels: Option<Vec<String>>,
}

/// Distinguishes a field given as null (`Some(None)`) from an absent one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /api/v1/products/{sku}/reviews` and `PUT /api/v1/products/{sku}/reviews/mine`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"rating": 5, "title": "Great sound", "body": "Comfortable for long flights."})))]
pub struct ReviewRequest {
    /// 1 to 5 stars.
    #[schema(minimum = 1, maximum = 5)]
    pub rating: u8,
    /// Title: 1 to 120 characters.
    #[schema(min_length = 1, max_length = 120)]
    pub title: String,
    /// Text: at most 4000 characters (may be empty).
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub body: String,
}

/// One review.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"id": 3, "author_name": "Asha Rao", "rating": 5, "title": "Great sound", "body": "Comfortable for long flights.", "verified_purchase": true, "created_at": "2026-01-07T08:00:00.000Z", "updated_at": "2026-01-07T08:00:00.000Z"})))]
pub struct ReviewDto {
    /// Id within the product's reviews, from 1.
    pub id: u64,
    /// The author's display name.
    pub author_name: String,
    /// 1 to 5 stars.
    pub rating: u8,
    /// Title.
    pub title: String,
    /// Text.
    pub body: String,
    /// Always true: only customers with a delivered order of the product may review it.
    pub verified_purchase: bool,
    /// First submission (RFC 3339).
    pub created_at: String,
    /// Last edit (RFC 3339).
    pub updated_at: String,
    /// Present and true when an admin hid it (only its author and admins see it then).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(required = false)]
    pub hidden: bool,
}

/// `GET /api/v1/products/{sku}/reviews`: the figures over every visible review, and one page.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"sku": "HP-ANC-100", "average": 4.5, "count": 2, "histogram": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1}, "items": [{"id": 3, "author_name": "Asha Rao", "rating": 5, "title": "Great sound", "body": "Comfortable for long flights.", "verified_purchase": true, "created_at": "2026-01-07T08:00:00.000Z", "updated_at": "2026-01-07T08:00:00.000Z"}], "next_cursor": "01720000019b979ce3000000000000000003"})))]
pub struct ReviewPageDto {
    /// The SKU.
    pub sku: String,
    /// Average rating over the visible reviews, rounded to hundredths (0 without reviews).
    pub average: f64,
    /// Visible reviews.
    pub count: u64,
    /// Visible reviews per star rating, keys "1" to "5" (all present).
    pub histogram: BTreeMap<String, u64>,
    /// This page, newest first.
    pub items: Vec<ReviewDto>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
    /// Page number (from 1), when asked by `page` and `per_page`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<usize>,
    /// Page size, when asked by `page` and `per_page`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_page: Option<usize>,
}

/// Query of `GET /api/v1/products/{sku}/reviews`: `limit` and `cursor`, or (older clients)
/// `page` and `per_page`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReviewQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page number, from 1.
    pub page: Option<usize>,
    /// Page size, 1 to 100.
    pub per_page: Option<usize>,
}

/// An error, as every error answer carries it: `application/problem+json` (RFC 9457). Some
/// problems add members of their own (`field` for invalid input; `sku`, `requested` and
/// `available` when out of stock).
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"type": "/problems/invalid-field", "title": "Invalid field", "status": 422, "detail": "phone: E.164: + and 8 to 15 digits", "field": "phone"})))]
pub struct ProblemDto {
    /// The kind of problem: `/problems/<slug>`, e.g. `/problems/invalid-field`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this case.
    pub detail: String,
    /// The field at fault, when the input was invalid.
    pub field: Option<String>,
}
