//! Payments: the gateway's signed webhook, refunds of delivered orders, an order's payment
//! history, the wallet (balance and top-up) and the couriers' shipping quotes.
//!
//! Refund rules: a refund is money only and needs a DELIVERED order (before delivery, cancel
//! the order instead). An admin may refund any delivered order; the owner may refund their
//! own within 30 days of delivery. `lines` refunds those units at the price paid; no `lines`
//! (or an empty list) refunds everything not refunded yet, shipping included. The sum of the
//! refunds never exceeds what was paid (409 otherwise). Each refund is idempotent by its
//! `Idempotency-Key`. Goods stay sold: returned goods are received back by the admin.

use super::orders::owned_order;
use super::validate;
use crate::dto::{rfc3339, MoneyDto};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::problem::{ApiResult, Problem};
use crate::webhook::{self, WebhookData, WebhookEvent, MAX_EVENT_ID_LEN};
use crate::EdgeState;
use agora_actors::account::{
    AccountCommand, Role, MAX_TOP_UP_MINOR, MAX_WALLET_MINOR, MIN_TOP_UP_MINOR,
};
use agora_actors::client::AskError;
use agora_actors::limits::MAX_LINE_QUANTITY;
use agora_actors::money::Money;
use agora_actors::order::{OrderCommand, OrderRefund};
use agora_actors::payment::{ChargeReport, MethodKind, PaymentCommand};
use agora_actors::{Command, DomainError, EntityKind, EntityRef, Reply};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};

/// Most lines in one refund request.
pub const MAX_REFUND_LINES: usize = 50;

/// The routes of this module, documented separately and merged into the API document.
#[derive(OpenApi)]
#[openapi(
    paths(
        webhook_in,
        request_refund,
        payment_history,
        get_wallet,
        top_up,
        quotes
    ),
    components(schemas(
        WebhookEvent,
        webhook::WebhookData,
        WebhookAck,
        RefundRequest,
        RefundLineDto,
        RefundDto,
        PaymentHistoryDto,
        PaymentEntryDto,
        WalletDto,
        TopUpRequest,
        QuoteDto,
        QuoteList,
    ))
)]
pub struct PaymentsApi;

/// The answer to a webhook delivery.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"received": true, "duplicate": false})))]
pub struct WebhookAck {
    /// Always true: the event was accepted.
    pub received: bool,
    /// The event id was applied before; this delivery changed nothing.
    pub duplicate: bool,
}

/// `POST /api/v1/orders/{order_id}/refunds`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"lines": [{"sku": "BOOK-RUST-01", "quantity": 1}]}))]
pub struct RefundRequest {
    /// Units to refund; absent or empty refunds everything not refunded yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<RefundLineDto>>,
}

/// Units of one SKU to refund.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"sku": "BOOK-RUST-01", "quantity": 1})))]
pub struct RefundLineDto {
    /// The SKU (a line of the order).
    pub sku: String,
    /// Units, 1..=100.
    pub quantity: u32,
}

/// A refund.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"refund_id": "r-1", "order_id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "amount": {"amount_minor": 100000, "currency": "INR"}, "lines": [{"sku": "BOOK-RUST-01", "quantity": 1}], "status": "pending", "requested_at": "2026-01-09T10:00:00.000Z", "completed_at": null})))]
pub struct RefundDto {
    /// Refund id.
    pub refund_id: String,
    /// The order.
    pub order_id: String,
    /// Amount.
    pub amount: MoneyDto,
    /// Units refunded; empty for a full refund.
    pub lines: Vec<RefundLineDto>,
    /// `pending` or `succeeded`.
    pub status: String,
    /// When it was asked for (RFC 3339).
    pub requested_at: String,
    /// When the money went back (RFC 3339).
    pub completed_at: Option<String>,
}

impl RefundDto {
    fn new(order_id: &str, r: &OrderRefund) -> Self {
        Self {
            refund_id: r.refund_id.clone(),
            order_id: order_id.to_string(),
            amount: MoneyDto::shop(r.amount_minor),
            lines: r
                .lines
                .iter()
                .map(|(sku, quantity)| RefundLineDto {
                    sku: sku.clone(),
                    quantity: *quantity,
                })
                .collect(),
            status: if r.completed_at_ms.is_some() {
                "succeeded"
            } else {
                "pending"
            }
            .into(),
            requested_at: rfc3339(r.requested_at_ms),
            completed_at: r.completed_at_ms.map(rfc3339),
        }
    }
}

/// One money movement of an order's payment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"kind": "charge", "id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "amount": {"amount_minor": 259900, "currency": "INR"}, "status": "succeeded", "created_at": "2026-01-07T08:00:00.000Z", "updated_at": "2026-01-07T08:00:01.200Z"})))]
pub struct PaymentEntryDto {
    /// `charge` or `refund`.
    pub kind: String,
    /// `charge`, or the refund id (`full` for a cancel or return).
    pub id: String,
    /// Amount.
    pub amount: MoneyDto,
    /// `processing`, `pending`, `succeeded` or `failed`.
    pub status: String,
    /// When it was asked for (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// The payment history of an order.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"order_id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "status": "partially_refunded", "method": "card", "amount": {"amount_minor": 259900, "currency": "INR"}, "refunded": {"amount_minor": 100000, "currency": "INR"}, "entries": [{"kind": "charge", "id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "amount": {"amount_minor": 259900, "currency": "INR"}, "status": "succeeded", "created_at": "2026-01-07T08:00:00.000Z", "updated_at": "2026-01-07T08:00:01.200Z"}]})))]
pub struct PaymentHistoryDto {
    /// The order.
    pub order_id: String,
    /// Payment status: none, processing, succeeded, failed, refunding, refunded.
    pub status: String,
    /// Method name.
    pub method: Option<String>,
    /// Amount charged (the order total).
    pub amount: MoneyDto,
    /// Refunded so far.
    pub refunded: MoneyDto,
    /// The charge and the refunds, oldest first.
    pub entries: Vec<PaymentEntryDto>,
}

/// The caller's wallet.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"balance": {"amount_minor": 250000, "currency": "INR"}, "min_top_up_minor": 100, "max_top_up_minor": 10000000, "max_balance_minor": 100000000})))]
pub struct WalletDto {
    /// Balance.
    pub balance: MoneyDto,
    /// Smallest top-up in minor units.
    pub min_top_up_minor: u64,
    /// Largest top-up in minor units.
    pub max_top_up_minor: u64,
    /// Largest balance in minor units.
    pub max_balance_minor: u64,
}

/// `POST /api/v1/me/wallet/top-up`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"amount_minor": 250000}))]
pub struct TopUpRequest {
    /// Amount in minor units, 100..=10,000,000 (₹1 to ₹1,00,000).
    pub amount_minor: u64,
}

/// `GET /api/v1/shipping/quotes` parameters.
#[derive(Debug, Deserialize)]
pub struct QuoteQuery {
    /// Destination city.
    pub city: Option<String>,
}

/// One courier's quote.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"courier": "swift", "name": "Swift Express", "price": {"amount_minor": 9900, "currency": "INR"}, "eta_days_min": 1, "eta_days_max": 2})))]
pub struct QuoteDto {
    /// Courier id, to pass as `shipping.courier` at checkout.
    pub courier: String,
    /// Display name.
    pub name: String,
    /// Price.
    pub price: MoneyDto,
    /// Earliest delivery, in days.
    pub eta_days_min: u32,
    /// Latest delivery, in days.
    pub eta_days_max: u32,
}

/// The couriers' quotes for a city, cheapest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({"city": "Pune", "quotes": [{"courier": "agora-post", "name": "Agora Post", "price": {"amount_minor": 0, "currency": "INR"}, "eta_days_min": 3, "eta_days_max": 6}, {"courier": "swift", "name": "Swift Express", "price": {"amount_minor": 9900, "currency": "INR"}, "eta_days_min": 1, "eta_days_max": 2}]})))]
pub struct QuoteList {
    /// The city quoted.
    pub city: String,
    /// One quote per courier.
    pub quotes: Vec<QuoteDto>,
}

fn key_id(user_id: &str, key: &str) -> String {
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(format!("{user_id}\n{key}").as_bytes())
    )
}

/// What a `charge.succeeded` event says was taken (the Payment checks it against its intent).
fn charge_report(data: &WebhookData) -> Result<ChargeReport, Problem> {
    let field = |name: &str, v: &Option<String>| {
        v.clone()
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .ok_or_else(|| Problem::invalid(&format!("data.{name}"), "1 to 128 characters"))
    };
    let method = field("method", &data.method)?;
    Ok(ChargeReport {
        payment_id: field("payment_id", &data.payment_id)?,
        amount: Money {
            amount_minor: data.amount_minor,
            currency: field("currency", &data.currency)?,
        },
        method: MethodKind::from_name(&method)
            .ok_or_else(|| Problem::invalid("data.method", "card, upi or wallet"))?,
    })
}

/// Receives a payment event from the gateway.
#[utoipa::path(post, path = "/api/v1/payments/webhook", tag = "payments", request_body = WebhookEvent,
    params(("Agora-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\"> with the shared webhook secret")),
    responses((status = 200, body = WebhookAck), (status = 400, description = "malformed event"),
              (status = 401, description = "missing, forged or stale signature"),
              (status = 409, description = "a success that does not match the payment's own charge (amount, currency, payment id, method): refused, nothing changes"),
              (status = 422, description = "a charge.succeeded without payment_id, currency or method"), (status = 503, description = "try again")))]
pub async fn webhook_in(
    State(st): State<Arc<EdgeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookAck>> {
    let Some(secret) = st.config.webhook_secret.as_deref() else {
        return Err(Problem::unauthorized("payment webhooks are not configured"));
    };
    let header = headers
        .get(webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    webhook::verify(
        secret,
        header,
        &body,
        st.clock.now_ms() / 1000,
        st.config.webhook_tolerance_secs,
    )
    .map_err(|e| Problem::unauthorized(e.to_string()))?;
    let event: WebhookEvent = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("not a payment event: {e}")))?;
    if event.id.is_empty() || event.id.len() > MAX_EVENT_ID_LEN {
        return Err(Problem::invalid("id", "1 to 128 characters"));
    }
    let order_id = event.data.order_id.clone();
    if order_id.is_empty() || order_id.len() > 64 {
        return Err(Problem::invalid("data.order_id", "1 to 64 characters"));
    }
    let reason = |default: &str| {
        event
            .data
            .reason
            .clone()
            .unwrap_or_else(|| default.to_string())
            .chars()
            .take(200)
            .collect::<String>()
    };
    let refund_id = || {
        event
            .data
            .refund_id
            .clone()
            .filter(|r| !r.is_empty() && r.len() <= 64)
            .ok_or_else(|| Problem::invalid("data.refund_id", "1 to 64 characters"))
    };
    let event_id = event.id.clone();
    let cmd = match event.kind.as_str() {
        "charge.pending" => PaymentCommand::ChargePending { event_id },
        "charge.succeeded" => PaymentCommand::ChargeSucceeded {
            event_id,
            report: charge_report(&event.data)?,
        },
        "charge.failed" => PaymentCommand::ChargeResult {
            event_id,
            result: Err(reason("declined")),
        },
        "refund.succeeded" => PaymentCommand::RefundResult {
            event_id,
            refund_id: refund_id()?,
            result: Ok(()),
        },
        "refund.failed" => PaymentCommand::RefundResult {
            event_id,
            refund_id: refund_id()?,
            result: Err(reason("refund_failed")),
        },
        other => {
            return Err(Problem::invalid(
                "type",
                format!(
                    "unknown event type {}",
                    other.chars().take(64).collect::<String>()
                ),
            ))
        }
    };
    // The event id is the message id: the entity records it with its change, so a repeated
    // delivery takes effect once.
    let reply = st
        .client
        .ask_once(
            EntityRef::new(EntityKind::Payment, order_id),
            Command::Payment(cmd),
            format!("webhook:{}", event.id),
        )
        .await?;
    Ok(Json(WebhookAck {
        received: true,
        duplicate: matches!(reply, Reply::Duplicate),
    }))
}

/// Refunds a delivered order, in full or per line.
#[utoipa::path(post, path = "/api/v1/orders/{order_id}/refunds", tag = "payments", request_body = RefundRequest, security(("bearer" = [])),
    params(("order_id" = String, Path, description = "order id"),
           ("Idempotency-Key" = String, Header, description = "1..=128 visible ASCII characters; a retry with the same key returns the same refund")),
    responses((status = 201, body = RefundDto, description = "the refund was asked for",
               headers(("Location" = String, description = "where it is read: /api/v1/orders/{order_id}/payments"))),
              (status = 400, description = "no Idempotency-Key"), (status = 404, description = "no such order of the caller's"),
              (status = 409, description = "not delivered, return window closed, or more than was paid"), (status = 422, description = "invalid line, or key reused with another body")))]
pub async fn request_refund(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(order_id): ApiPath<String>,
    ApiJson(req): ApiJson<RefundRequest>,
) -> ApiResult<axum::response::Response> {
    let key = validate::idempotency_header(&headers)?;
    let lines = req.lines.clone().unwrap_or_default();
    if lines.len() > MAX_REFUND_LINES {
        return Err(Problem::invalid(
            "lines",
            format!("at most {MAX_REFUND_LINES} lines"),
        ));
    }
    for (i, l) in lines.iter().enumerate() {
        validate::sku(&l.sku).map_err(|_| Problem::invalid(&format!("lines[{i}].sku"), "a SKU"))?;
        if l.quantity == 0 || l.quantity > MAX_LINE_QUANTITY {
            return Err(Problem::invalid(
                &format!("lines[{i}].quantity"),
                format!("1..={MAX_LINE_QUANTITY}"),
            ));
        }
    }
    owned_order(&st, &caller, &order_id).await?;
    let body = serde_json::to_string(&req).map_err(|e| Problem::internal(e.to_string()))?;
    let refund_id = key_id(&caller.user_id, key);
    let v = super::orders::order_cmd(
        &st,
        &order_id,
        OrderCommand::RequestRefund {
            refund_id: refund_id.clone(),
            request_hash: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(body.as_bytes())),
            lines: lines.into_iter().map(|l| (l.sku, l.quantity)).collect(),
            by_admin: caller.role == Role::Admin,
        },
    )
    .await?;
    let r = v
        .refunds
        .iter()
        .find(|r| r.refund_id == refund_id)
        .ok_or_else(|| Problem::internal("the refund is missing from the order"))?;
    // Refunds are read in the order's payment history.
    Ok(crate::created::with_location(
        (StatusCode::CREATED, Json(RefundDto::new(&order_id, r))),
        &format!("/api/v1/orders/{order_id}/payments"),
    ))
}

/// The payment history of one of the caller's orders: the charge and the refunds.
#[utoipa::path(get, path = "/api/v1/orders/{order_id}/payments", tag = "payments", security(("bearer" = [])),
    params(("order_id" = String, Path, description = "order id")),
    responses((status = 200, body = PaymentHistoryDto), (status = 404, description = "no such order of the caller's")))]
pub async fn payment_history(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    ApiPath(order_id): ApiPath<String>,
) -> ApiResult<Json<PaymentHistoryDto>> {
    owned_order(&st, &caller, &order_id).await?;
    let reply = st
        .client
        .ask(
            EntityRef::new(EntityKind::Payment, order_id.as_str()),
            Command::Payment(PaymentCommand::Get),
        )
        .await?;
    let Reply::Payment(p) = reply else {
        return Err(Problem::internal("unexpected reply to Payment::Get"));
    };
    Ok(Json(PaymentHistoryDto {
        order_id,
        status: p.status,
        method: p.method,
        amount: MoneyDto::shop(p.amount_minor),
        refunded: MoneyDto::shop(p.refunded_minor),
        entries: p
            .entries
            .into_iter()
            .map(|e| PaymentEntryDto {
                kind: e.kind,
                id: e.id,
                amount: MoneyDto::shop(e.amount_minor),
                status: e.status,
                created_at: rfc3339(e.created_at_ms),
                updated_at: rfc3339(e.updated_at_ms),
            })
            .collect(),
    }))
}

async fn wallet_of(st: &EdgeState, user_id: &str, cmd: AccountCommand) -> ApiResult<WalletDto> {
    let reply = st
        .client
        .ask(
            EntityRef::new(EntityKind::Account, user_id),
            Command::Account(cmd),
        )
        .await
        .map_err(account_problem)?;
    wallet_dto(&reply)
}

/// The problem an account's refusal becomes (an unknown account is a 404).
fn account_problem(e: AskError) -> Problem {
    match e {
        AskError::Domain(DomainError::NotFound(_)) => Problem::not_found("no such account"),
        e => e.into(),
    }
}

/// The wallet in an account's reply.
fn wallet_dto(reply: &Reply) -> ApiResult<WalletDto> {
    let Reply::Account(a) = reply else {
        return Err(Problem::internal("unexpected reply to an account command"));
    };
    Ok(WalletDto {
        balance: MoneyDto::shop(a.wallet_minor),
        min_top_up_minor: MIN_TOP_UP_MINOR,
        max_top_up_minor: MAX_TOP_UP_MINOR,
        max_balance_minor: MAX_WALLET_MINOR,
    })
}

/// The caller's wallet balance and limits.
#[utoipa::path(get, path = "/api/v1/me/wallet", tag = "payments", security(("bearer" = [])),
    responses((status = 200, body = WalletDto), (status = 401, description = "no or bad token")))]
pub async fn get_wallet(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
) -> ApiResult<Json<WalletDto>> {
    Ok(Json(
        wallet_of(&st, &caller.user_id, AccountCommand::Get).await?,
    ))
}

/// Adds money to the caller's wallet (a simulated funding source, credited at once).
#[utoipa::path(post, path = "/api/v1/me/wallet/top-up", tag = "payments", request_body = TopUpRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1..=128 visible ASCII characters; a retry with the same key and amount tops up once, for as long as the node keeps message ids (7 days by default, `--message-retention-ms`)")),
    responses((status = 200, body = WalletDto), (status = 400, description = "no Idempotency-Key"),
              (status = 409, description = "the balance would exceed its limit"), (status = 422, description = "amount out of range, or key reused with another amount")))]
pub async fn top_up(
    State(st): State<Arc<EdgeState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<TopUpRequest>,
) -> ApiResult<Json<WalletDto>> {
    let key = validate::idempotency_header(&headers)?;
    if !(MIN_TOP_UP_MINOR..=MAX_TOP_UP_MINOR).contains(&req.amount_minor) {
        return Err(Problem::invalid(
            "amount_minor",
            format!("{MIN_TOP_UP_MINOR}..={MAX_TOP_UP_MINOR}"),
        ));
    }
    let top_up_id = key_id(&caller.user_id, key);
    // The message id makes the key last as long as any message id (the node's message
    // retention, 7 days by default), not only as long as the account's recent top-ups: a
    // replay is a duplicate and credits nothing. The amount is part of it, so a key reused
    // with another amount still reaches the account, which refuses it while it remembers it.
    let msg_id = format!("top-up:{top_up_id}:{}", req.amount_minor);
    let cmd = AccountCommand::TopUp {
        top_up_id,
        amount_minor: req.amount_minor,
    };
    let account = EntityRef::new(EntityKind::Account, caller.user_id.clone());
    match st
        .client
        .ask_once(account, Command::Account(cmd), msg_id)
        .await
    {
        Ok(Reply::Duplicate) => {
            tracing::debug!(user_id = %caller.user_id, "top-up replayed: credited once");
            Ok(Json(
                wallet_of(&st, &caller.user_id, AccountCommand::Get).await?,
            ))
        }
        Ok(reply) => Ok(Json(wallet_dto(&reply)?)),
        Err(e) => Err(account_problem(e)),
    }
}

/// Every courier's price and delivery estimate to a city.
#[utoipa::path(get, path = "/api/v1/shipping/quotes", tag = "payments",
    params(("city" = String, Query, description = "destination city, 1..=200 characters")),
    responses((status = 200, body = QuoteList), (status = 422, description = "no or bad city")))]
pub async fn quotes(ApiQuery(q): ApiQuery<QuoteQuery>) -> ApiResult<Json<QuoteList>> {
    let city = q.city.unwrap_or_default();
    validate::name("city", &city)?;
    let quotes = agora_actors::shipping::quotes(&city)
        .into_iter()
        .map(|q| QuoteDto {
            courier: q.courier,
            name: q.name,
            price: MoneyDto::shop(q.price_minor),
            eta_days_min: q.eta_days_min,
            eta_days_max: q.eta_days_max,
        })
        .collect();
    Ok(Json(QuoteList { city, quotes }))
}
