//! Order: runs the order saga as a durable orchestrator. Every step is a state change plus
//! outbox messages written in one transaction; every failure path compensates.
//!
//! `PENDING → STOCK_RESERVED → AWAITING_PAYMENT → PAYMENT_PROCESSING → CONFIRMED → SHIPPED →
//! DELIVERED`, with `PAYMENT_FAILED → CANCELLED`, `CANCELLED`, `EXPIRED`, and
//! `REFUND_PENDING → REFUNDED` for a cancel after confirmation (or `REFUND_PENDING → SHIPPED`
//! when the courier had already picked the parcel up: the cancel came too late), and
//! `SHIPPED → RETURNED → REFUNDED` when every delivery attempt failed and the parcel went
//! back (the goods return to stock, the payment is refunded in full).
//!
//! A delivered order can be refunded, in full or per line (`RequestRefund`): money only,
//! the status stays `DELIVERED` and the goods stay sold (returned goods are received back
//! into stock by the admin); the amounts refunded never exceed what was paid.

use crate::account::AccountCommand;
use crate::cart::CartCommand;
use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::DomainError;
use crate::ids::shipment_id_for_order;
use crate::inbox::InboxCommand;
use crate::money::sum_minor;
use crate::payment::{Method, PaymentCommand};
use crate::review::ReviewCommand;
use crate::shipment::{ShipmentCommand, ShipmentStatus};
use crate::shipping::ShippingChoice;
use crate::stock::StockCommand;
use crate::{EntityKind, EntityRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Placed; stock being reserved.
    Pending,
    /// Every line's stock is held.
    StockReserved,
    /// Waiting for the payment to start.
    AwaitingPayment,
    /// The gateway or wallet is working on it.
    PaymentProcessing,
    /// Paid; stock committed; shipment created.
    Confirmed,
    /// Picked up by the courier.
    Shipped,
    /// Delivered (terminal).
    Delivered,
    /// The payment failed (moves on to CANCELLED).
    PaymentFailed,
    /// Cancelled; stock released (terminal).
    Cancelled,
    /// The reservation timed out; stock released (terminal).
    Expired,
    /// Cancelled after confirmation; refund on its way.
    RefundPending,
    /// Refunded (terminal).
    Refunded,
    /// Every delivery attempt failed and the parcel came back; refund on its way.
    Returned,
}

impl OrderStatus {
    /// The API name (`PENDING`, `STOCK_RESERVED`, …).
    pub fn name(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::StockReserved => "STOCK_RESERVED",
            OrderStatus::AwaitingPayment => "AWAITING_PAYMENT",
            OrderStatus::PaymentProcessing => "PAYMENT_PROCESSING",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::PaymentFailed => "PAYMENT_FAILED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Expired => "EXPIRED",
            OrderStatus::RefundPending => "REFUND_PENDING",
            OrderStatus::Refunded => "REFUNDED",
            OrderStatus::Returned => "RETURNED",
        }
    }

    /// Whether the saga is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Delivered
                | OrderStatus::Cancelled
                | OrderStatus::Expired
                | OrderStatus::Refunded
        )
    }

    /// Whether stock is still held for the order (before confirmation, not terminal).
    pub fn holds_reservation(self) -> bool {
        matches!(
            self,
            OrderStatus::Pending
                | OrderStatus::StockReserved
                | OrderStatus::AwaitingPayment
                | OrderStatus::PaymentProcessing
        )
    }
}

/// Whether the saga may move from `from` to `to`.
pub fn transition_allowed(from: OrderStatus, to: OrderStatus) -> bool {
    use OrderStatus::*;
    matches!(
        (from, to),
        (Pending, StockReserved | Cancelled | Expired)
            | (StockReserved, AwaitingPayment)
            | (
                AwaitingPayment,
                PaymentProcessing | Confirmed | PaymentFailed | Cancelled | Expired
            )
            | (
                PaymentProcessing,
                Confirmed | PaymentFailed | Cancelled | Expired
            )
            | (PaymentFailed, Cancelled)
            | (Confirmed, Shipped | RefundPending)
            | (Shipped, Delivered)
            | (RefundPending, Refunded | Shipped)
            | (Shipped, Returned)
            | (Returned, Refunded)
    )
}

/// One order line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The SKU.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Unit price in minor units, fixed at checkout.
    pub unit_price_minor: u64,
}

/// A shipping address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Recipient.
    pub name: String,
    /// Street line.
    pub line1: String,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO country code.
    pub country: String,
}

/// What the checkout request asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The shopper.
    pub customer: String,
    /// Lines, each SKU once.
    pub lines: Vec<OrderLine>,
    /// How to pay.
    pub method: Method,
    /// Where to ship.
    pub address: Address,
    /// Hash of the checkout request, to tell a retry from a different request.
    pub request_hash: String,
    /// When it was placed.
    pub placed_at_ms: u64,
    /// The courier chosen and its price (the default courier, free, when none was chosen).
    pub shipping: ShippingChoice,
}

impl Placement {
    /// The order total in minor units: the lines plus the shipping price.
    pub fn total_minor(&self) -> u64 {
        self.lines_minor().saturating_add(self.shipping.price_minor)
    }

    /// The lines' total in minor units.
    pub fn lines_minor(&self) -> u64 {
        sum_minor(
            self.lines
                .iter()
                .map(|l| u64::from(l.quantity).saturating_mul(l.unit_price_minor)),
        )
    }
}

/// Most refunds per order.
pub const MAX_REFUNDS_PER_ORDER: usize = 32;
/// How long after delivery the shopper may ask for a refund themselves (30 days).
pub const RETURN_WINDOW_MS: u64 = 30 * 24 * 3600 * 1000;

/// One refund asked for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefund {
    /// Its id (derived from the request's idempotency key).
    pub refund_id: String,
    /// Hash of the refund request, to tell a retry from a different request.
    pub request_hash: String,
    /// SKU and units refunded; empty for a full refund.
    pub lines: Vec<(String, u32)>,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// When it was asked for.
    pub requested_at_ms: u64,
    /// When the money went back (None while pending).
    pub completed_at_ms: Option<u64>,
}

/// How the checkout request was answered, fixed once stock answered, so that a retry with
/// the same idempotency key gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settlement {
    /// Stock is held; the order goes on (the status when it was answered).
    Accepted(OrderStatus),
    /// A line could not be reserved.
    OutOfStock {
        /// The SKU.
        sku: String,
        /// Units asked for.
        requested: u64,
        /// Units available then.
        available: u64,
    },
}

/// The order state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    /// The checkout request, once placed.
    pub placement: Option<Placement>,
    /// Status history, oldest first; the last entry is the current status.
    pub history: Vec<(OrderStatus, u64)>,
    /// Stock answers by SKU: true when reserved.
    pub stock_answers: BTreeMap<String, bool>,
    /// The first SKU refused, with the units available then.
    pub rejection: Option<(String, u64)>,
    /// How the checkout was answered.
    pub settlement: Option<Settlement>,
    /// Payment status as last reported.
    pub payment_status: String,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// Refunds asked through the API (after delivery), oldest first.
    pub refunds: Vec<OrderRefund>,
}

impl OrderState {
    /// The current status (None before placement).
    pub fn status(&self) -> Option<OrderStatus> {
        self.history.last().map(|(s, _)| *s)
    }

    fn set(&mut self, to: OrderStatus, at: u64) {
        if let Some(from) = self.status() {
            assert!(
                transition_allowed(from, to),
                "order transition {from:?} -> {to:?} is not allowed"
            );
        }
        self.history.push((to, at));
    }
}

/// Commands for an Order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderCommand {
    /// Check out (from the edge).
    Place(Placement),
    /// Read, refusing if the order was placed by a different checkout request.
    CheckRequest {
        /// Hash of the retried checkout request.
        request_hash: String,
    },
    /// Wait until the checkout is settled (stock answered), then read.
    AwaitSettled,
    /// STOCK_RESERVED from a StockItem.
    StockReserved {
        /// The SKU.
        sku: String,
    },
    /// STOCK_REJECTED from a StockItem.
    StockRejected {
        /// The SKU.
        sku: String,
        /// Units available then.
        available: u64,
    },
    /// The payment has started.
    PaymentStarted,
    /// PAYMENT_SUCCEEDED.
    PaymentSucceeded,
    /// PAYMENT_FAILED.
    PaymentFailed {
        /// Why.
        reason: String,
    },
    /// REFUND_ISSUED.
    RefundCompleted,
    /// Durable timer: the reservation has run out.
    ExpireReservation,
    /// Durable timer: the gateway did not answer in time.
    PaymentTimeout,
    /// The shopper cancels.
    Cancel,
    /// The shipment moved.
    ShipmentProgress {
        /// Its new status.
        status: ShipmentStatus,
    },
    /// Read it.
    Get,
    /// Refund a delivered order, in full (`lines` empty) or per line (from the edge).
    RequestRefund {
        /// Refund id (from the idempotency key).
        refund_id: String,
        /// Hash of the request.
        request_hash: String,
        /// SKU and units to refund; empty for everything not yet refunded.
        lines: Vec<(String, u32)>,
        /// Whether an admin asks (otherwise the owner, within the return window).
        by_admin: bool,
    },
    /// A refund asked through `RequestRefund` has been paid back (from the Payment).
    RefundSettled {
        /// The refund.
        refund_id: String,
    },
}

/// An order as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Order id.
    pub order_id: String,
    /// The shopper.
    pub customer: String,
    /// Current status name.
    pub status: String,
    /// Lines.
    pub lines: Vec<OrderLine>,
    /// Total in minor units.
    pub total_minor: u64,
    /// Payment method name.
    pub payment_method: String,
    /// Payment status name.
    pub payment_status: String,
    /// Shipment id, once confirmed.
    pub shipment_id: Option<String>,
    /// Status history: name and time.
    pub history: Vec<(String, u64)>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// How the checkout was answered.
    pub settlement: Option<Settlement>,
    /// The courier and shipping price.
    pub shipping: ShippingChoice,
    /// Refunds asked after delivery.
    pub refunds: Vec<OrderRefund>,
}

fn stock(sku: &str) -> EntityRef {
    EntityRef::new(EntityKind::StockItem, sku)
}

fn notify(p: &Placement, ctx: &mut Ctx, kind: &str) {
    let order_id = ctx.me.id.clone();
    ctx.send(
        EntityRef::new(EntityKind::Inbox, p.customer.clone()),
        kind,
        Command::Inbox(InboxCommand::Event {
            kind: kind.to_string(),
            order_id,
        }),
    );
}

/// Whether an order in `status` holds (or is getting) stock reservations: before its
/// payment settles; afterwards the holds were committed or released.
fn holds_stock(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Pending
            | OrderStatus::StockReserved
            | OrderStatus::AwaitingPayment
            | OrderStatus::PaymentProcessing
    )
}

/// Releases this order's hold on `sku`.
fn release_line(sku: &str, ctx: &mut Ctx) {
    let order_id = ctx.me.id.clone();
    ctx.send(
        stock(sku),
        "STOCK_RELEASE",
        Command::Stock(StockCommand::Release { order_id }),
    );
}

fn release_all(p: &Placement, ctx: &mut Ctx) {
    let order_id = ctx.me.id.clone();
    for l in &p.lines {
        release_line(&l.sku, ctx);
        if agora_seams::planted::is_planted(agora_seams::planted::Bug::DoubleRelease) {
            // The planted bug: compensation also puts the units back a second way.
            restock_line(l, &order_id, ctx);
        }
    }
}

/// Puts an order's sold units back on the shelf (cancelled after confirmation, returned).
fn restock_all(p: &Placement, ctx: &mut Ctx) {
    let order_id = ctx.me.id.clone();
    for l in &p.lines {
        restock_line(l, &order_id, ctx);
    }
}

/// Puts one line's units back on the shelf.
fn restock_line(l: &OrderLine, order_id: &str, ctx: &mut Ctx) {
    ctx.send(
        stock(&l.sku),
        "STOCK_UPDATED",
        Command::Stock(StockCommand::Restock {
            order_id: order_id.to_string(),
            quantity: u64::from(l.quantity),
        }),
    );
}

/// Compensates a paid order that will not be delivered: the whole payment goes back and the
/// goods return to the shelf.
fn refund_and_restock(s: &mut OrderState, p: &Placement, ctx: &mut Ctx) {
    s.payment_status = "refunding".into();
    ctx.send(
        payment(ctx),
        "REFUND_REQUESTED",
        Command::Payment(PaymentCommand::Refund),
    );
    restock_all(p, ctx);
}

/// Ends an order that still holds a reservation: release the stock, drop the payment.
fn end_unpaid(s: &mut OrderState, p: &Placement, ctx: &mut Ctx, to: OrderStatus, reason: &str) {
    s.set(to, ctx.now_ms);
    s.cancel_reason = Some(reason.to_string());
    release_all(p, ctx);
    // Abandon as soon as the payment was asked for, even before PAYMENT_PROCESSING came back:
    // an unanswered charge otherwise retries for ever. The ask precedes this in its queue.
    if s.history
        .iter()
        .any(|(st, _)| *st == OrderStatus::AwaitingPayment)
    {
        ctx.send(
            payment(ctx),
            "PAYMENT_ABANDON",
            Command::Payment(PaymentCommand::Abandon),
        );
    }
    notify(p, ctx, "ORDER_CANCELLED");
}

/// DELIVERED: record it and tell the customer and the review board of each SKU (the
/// customer may now review those products).
fn delivered(s: &mut OrderState, p: &Placement, ctx: &mut Ctx) {
    s.set(OrderStatus::Delivered, ctx.now_ms);
    notify(p, ctx, "ORDER_DELIVERED");
    let order_id = ctx.me.id.clone();
    let skus: std::collections::BTreeSet<&str> = p.lines.iter().map(|l| l.sku.as_str()).collect();
    for sku in skus {
        ctx.send(
            EntityRef::new(EntityKind::ReviewBoard, sku),
            "ORDER_DELIVERED",
            Command::Review(ReviewCommand::Delivered {
                customer: p.customer.clone(),
                order_id: order_id.clone(),
            }),
        );
    }
}

fn payment(ctx: &Ctx) -> EntityRef {
    EntityRef::new(EntityKind::Payment, ctx.me.id.clone())
}

fn view(s: &OrderState, ctx: &Ctx) -> Result<Outcome, DomainError> {
    let p = s
        .placement
        .as_ref()
        .ok_or_else(|| DomainError::NotFound(format!("order {}", ctx.me.id)))?;
    let status = s
        .status()
        .map(OrderStatus::name)
        .unwrap_or("PENDING")
        .to_string();
    let confirmed = s
        .history
        .iter()
        .any(|(st, _)| *st == OrderStatus::Confirmed);
    reply(Reply::Order(OrderView {
        order_id: ctx.me.id.clone(),
        customer: p.customer.clone(),
        status,
        lines: p.lines.clone(),
        total_minor: p.total_minor(),
        payment_method: p.method.name().to_string(),
        payment_status: s.payment_status.clone(),
        shipment_id: confirmed.then(|| shipment_id_for_order(&ctx.me.id)),
        history: s
            .history
            .iter()
            .map(|(st, at)| (st.name().to_string(), *at))
            .collect(),
        cancel_reason: s.cancel_reason.clone(),
        settlement: s.settlement.clone(),
        shipping: p.shipping.clone(),
        refunds: s.refunds.clone(),
    }))
}

/// Validates and records a refund of a delivered order, and asks the payment for it.
fn request_refund(
    s: &mut OrderState,
    p: &Placement,
    ctx: &mut Ctx,
    refund_id: String,
    request_hash: String,
    lines: Vec<(String, u32)>,
    by_admin: bool,
) -> Result<(), DomainError> {
    if let Some(r) = s.refunds.iter().find(|r| r.refund_id == refund_id) {
        return if r.request_hash == request_hash {
            Ok(())
        } else {
            Err(DomainError::IdempotencyMismatch)
        };
    }
    let delivered_at = s
        .history
        .iter()
        .find(|(st, _)| *st == OrderStatus::Delivered)
        .map(|(_, at)| *at);
    let Some(delivered_at) = delivered_at else {
        return Err(DomainError::Conflict(
            "only a delivered order can be refunded; cancel it instead".into(),
        ));
    };
    if !by_admin && ctx.now_ms > delivered_at.saturating_add(RETURN_WINDOW_MS) {
        return Err(DomainError::Conflict(
            "the 30-day return window has closed".into(),
        ));
    }
    if s.refunds.len() >= MAX_REFUNDS_PER_ORDER {
        return Err(DomainError::Conflict(format!(
            "an order takes at most {MAX_REFUNDS_PER_ORDER} refunds"
        )));
    }
    let asked = sum_minor(s.refunds.iter().map(|r| r.amount_minor));
    let remaining = p.total_minor().saturating_sub(asked);
    let full = s.refunds.iter().any(|r| r.lines.is_empty());
    let amount_minor =
        if lines.is_empty() {
            remaining
        } else {
            let mut amount = 0u64;
            let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
            for (i, (sku, qty)) in lines.iter().enumerate() {
                let Some(line) = p.lines.iter().find(|l| l.sku == *sku) else {
                    return Err(crate::error::invalid(
                        &format!("lines[{i}].sku"),
                        format!("{sku} is not in this order"),
                    ));
                };
                if *qty == 0 {
                    return Err(crate::error::invalid(
                        &format!("lines[{i}].quantity"),
                        "at least 1",
                    ));
                }
                let units = wanted.entry(sku.as_str()).or_default();
                *units = units.saturating_add(u64::from(*qty));
                let line_minor = u64::from(*qty).saturating_mul(line.unit_price_minor);
                amount = amount.saturating_add(line_minor);
            }
            for (sku, qty) in wanted {
                let ordered = p
                    .lines
                    .iter()
                    .find(|l| l.sku == sku)
                    .map_or(0, |l| u64::from(l.quantity));
                let before: u64 = s
                    .refunds
                    .iter()
                    .flat_map(|r| r.lines.iter())
                    .filter(|(k, _)| k == sku)
                    .map(|(_, q)| u64::from(*q))
                    .sum();
                if full || before.saturating_add(qty) > ordered {
                    return Err(DomainError::Conflict(format!(
                    "refund exceeds what was paid: {sku} has {} of {ordered} units left to refund",
                    if full { 0 } else { ordered.saturating_sub(before) }
                )));
                }
            }
            amount
        };
    if amount_minor == 0 || amount_minor > remaining {
        return Err(DomainError::Conflict(format!(
            "refund exceeds what was paid: {remaining} minor units left to refund"
        )));
    }
    s.refunds.push(OrderRefund {
        refund_id: refund_id.clone(),
        request_hash,
        lines,
        amount_minor,
        requested_at_ms: ctx.now_ms,
        completed_at_ms: None,
    });
    ctx.send(
        payment(ctx),
        "REFUND_REQUESTED",
        Command::Payment(PaymentCommand::RefundPart {
            refund_id,
            amount_minor,
        }),
    );
    Ok(())
}

fn place(s: &mut OrderState, p: Placement, ctx: &mut Ctx) -> Result<(), DomainError> {
    if let Some(existing) = &s.placement {
        return if existing.request_hash == p.request_hash {
            Ok(())
        } else {
            Err(DomainError::IdempotencyMismatch)
        };
    }
    if p.lines.is_empty() {
        return Err(DomainError::Conflict("the cart is empty".into()));
    }
    let order_id = ctx.me.id.clone();
    for l in &p.lines {
        ctx.send(
            stock(&l.sku),
            "ORDER_PLACED",
            Command::Stock(StockCommand::Reserve {
                order_id: order_id.clone(),
                quantity: u64::from(l.quantity),
            }),
        );
    }
    ctx.timer(
        ctx.now_ms + ctx.config.reservation_ttl_ms,
        "RESERVATION_EXPIRY",
        Command::Order(OrderCommand::ExpireReservation),
    );
    ctx.send(
        EntityRef::new(EntityKind::Account, p.customer.clone()),
        "ORDER_PLACED",
        Command::Account(AccountCommand::OrderPlaced { order_id }),
    );
    notify(&p, ctx, "ORDER_PLACED");
    s.history.push((OrderStatus::Pending, ctx.now_ms));
    s.payment_status = "none".into();
    s.placement = Some(p);
    Ok(())
}

/// Called when every line has answered.
fn stock_settled(s: &mut OrderState, p: &Placement, ctx: &mut Ctx) {
    if let Some((sku, available)) = s.rejection.clone() {
        let requested = p
            .lines
            .iter()
            .find(|l| l.sku == sku)
            .map(|l| u64::from(l.quantity))
            .unwrap_or(0);
        s.settlement = Some(Settlement::OutOfStock {
            sku,
            requested,
            available,
        });
        end_unpaid(s, p, ctx, OrderStatus::Cancelled, "out_of_stock");
        ctx.send(
            EntityRef::new(EntityKind::Cart, p.customer.clone()),
            "CART_RESTORE",
            Command::Cart(CartCommand::Restore {
                order_id: ctx.me.id.clone(),
            }),
        );
        return;
    }
    s.set(OrderStatus::StockReserved, ctx.now_ms);
    s.set(OrderStatus::AwaitingPayment, ctx.now_ms);
    s.settlement = Some(Settlement::Accepted(OrderStatus::AwaitingPayment));
    let order_id = ctx.me.id.clone();
    ctx.send(
        payment(ctx),
        "PAYMENT_REQUESTED",
        Command::Payment(PaymentCommand::Authorize {
            customer: p.customer.clone(),
            amount_minor: p.total_minor(),
            method: p.method.clone(),
        }),
    );
    ctx.timer(
        ctx.now_ms + ctx.config.payment_timeout_ms,
        "PAYMENT_TIMEOUT",
        Command::Order(OrderCommand::PaymentTimeout),
    );
    ctx.send(
        EntityRef::new(EntityKind::Cart, p.customer.clone()),
        "CART_CHECKED_OUT",
        Command::Cart(CartCommand::CheckedOut {
            order_id,
            lines: p
                .lines
                .iter()
                .map(|l| (l.sku.clone(), l.quantity))
                .collect(),
        }),
    );
}

/// Handles one command.
pub fn handle(
    s: &mut OrderState,
    cmd: OrderCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    if let OrderCommand::Place(p) = cmd {
        place(s, p, ctx)?;
        return view(s, ctx);
    }
    let Some(p) = s.placement.clone() else {
        return Err(DomainError::NotFound(format!("order {}", ctx.me.id)));
    };
    let Some(status) = s.status() else {
        return Err(DomainError::NotFound(format!("order {}", ctx.me.id)));
    };
    match cmd {
        OrderCommand::Place(_) => unreachable!("handled above"),
        OrderCommand::CheckRequest { request_hash } => {
            if p.request_hash != request_hash {
                return Err(DomainError::IdempotencyMismatch);
            }
        }
        OrderCommand::AwaitSettled => {
            if s.settlement.is_none() {
                return Ok(Outcome::Park);
            }
        }
        OrderCommand::StockReserved { sku } if !holds_stock(status) => {
            // A hold made after this order let go of its stock (its release overtook the
            // reservation, or the reservation came after the commit): give it back.
            release_line(&sku, ctx);
        }
        OrderCommand::StockReserved { sku } | OrderCommand::StockRejected { sku, .. }
            if status != OrderStatus::Pending || s.stock_answers.contains_key(&sku) =>
        {
            // A repeated answer while the hold is this order's: nothing changes.
        }
        OrderCommand::StockReserved { sku } => {
            s.stock_answers.insert(sku, true);
            if s.stock_answers.len() == p.lines.len() {
                stock_settled(s, &p, ctx);
            }
        }
        OrderCommand::StockRejected { sku, available } => {
            s.stock_answers.insert(sku.clone(), false);
            if s.rejection.is_none() {
                s.rejection = Some((sku, available));
            }
            if s.stock_answers.len() == p.lines.len() {
                stock_settled(s, &p, ctx);
            }
        }
        OrderCommand::PaymentStarted => {
            if status == OrderStatus::AwaitingPayment {
                s.set(OrderStatus::PaymentProcessing, ctx.now_ms);
            }
            if s.payment_status == "none" {
                s.payment_status = "processing".into();
            }
        }
        OrderCommand::PaymentSucceeded => {
            s.payment_status = "succeeded".into();
            if matches!(
                status,
                OrderStatus::AwaitingPayment | OrderStatus::PaymentProcessing
            ) {
                s.set(OrderStatus::Confirmed, ctx.now_ms);
                let order_id = ctx.me.id.clone();
                for l in &p.lines {
                    ctx.send(
                        stock(&l.sku),
                        "STOCK_COMMIT",
                        Command::Stock(StockCommand::Commit {
                            order_id: order_id.clone(),
                        }),
                    );
                }
                ctx.send(
                    EntityRef::new(EntityKind::Shipment, shipment_id_for_order(&order_id)),
                    "SHIPMENT_REQUESTED",
                    Command::Shipment(ShipmentCommand::Create {
                        order_id,
                        customer: p.customer.clone(),
                        city: p.address.city.clone(),
                        courier: p.shipping.courier.clone(),
                    }),
                );
                notify(&p, ctx, "ORDER_CONFIRMED");
            } else if matches!(status, OrderStatus::Cancelled | OrderStatus::Expired) {
                // Paid after the order ended: give the money back.
                s.payment_status = "refunding".into();
                ctx.send(
                    payment(ctx),
                    "REFUND_REQUESTED",
                    Command::Payment(PaymentCommand::Refund),
                );
            }
        }
        OrderCommand::PaymentFailed { reason } => {
            s.payment_status = "failed".into();
            if matches!(
                status,
                OrderStatus::AwaitingPayment | OrderStatus::PaymentProcessing
            ) {
                s.set(OrderStatus::PaymentFailed, ctx.now_ms);
                notify(&p, ctx, "PAYMENT_FAILED");
                end_unpaid(
                    s,
                    &p,
                    ctx,
                    OrderStatus::Cancelled,
                    &format!("payment_failed: {reason}"),
                );
            }
        }
        OrderCommand::PaymentTimeout => {
            if matches!(
                status,
                OrderStatus::AwaitingPayment | OrderStatus::PaymentProcessing
            ) {
                s.set(OrderStatus::PaymentFailed, ctx.now_ms);
                notify(&p, ctx, "PAYMENT_FAILED");
                end_unpaid(s, &p, ctx, OrderStatus::Cancelled, "payment_timeout");
            }
        }
        OrderCommand::ExpireReservation => {
            if status.holds_reservation() {
                end_unpaid(s, &p, ctx, OrderStatus::Expired, "reservation_expired");
            }
        }
        OrderCommand::RefundCompleted => {
            s.payment_status = "refunded".into();
            if matches!(status, OrderStatus::RefundPending | OrderStatus::Returned) {
                s.set(OrderStatus::Refunded, ctx.now_ms);
            }
            notify(&p, ctx, "REFUND_ISSUED");
        }
        OrderCommand::Cancel => match status {
            st if st.holds_reservation() => {
                end_unpaid(s, &p, ctx, OrderStatus::Cancelled, "cancelled_by_customer")
            }
            OrderStatus::Confirmed => {
                // The parcel may already be picked up: only the shipment knows. Refund and
                // restock once it confirms the cancellation (`ShipmentProgress { Cancelled }`).
                s.set(OrderStatus::RefundPending, ctx.now_ms);
                s.cancel_reason = Some("cancelled_by_customer".into());
                ctx.send(
                    EntityRef::new(EntityKind::Shipment, shipment_id_for_order(&ctx.me.id)),
                    "SHIPMENT_CANCEL",
                    Command::Shipment(ShipmentCommand::Cancel),
                );
            }
            OrderStatus::Cancelled
            | OrderStatus::Expired
            | OrderStatus::RefundPending
            | OrderStatus::Refunded
            | OrderStatus::Returned => {}
            other => {
                return Err(DomainError::Conflict(format!(
                    "an order that is {} cannot be cancelled",
                    other.name()
                )))
            }
        },
        OrderCommand::ShipmentProgress { status: ship } => match (status, ship) {
            (OrderStatus::RefundPending, ShipmentStatus::Cancelled) => {
                refund_and_restock(s, &p, ctx);
                notify(&p, ctx, "ORDER_CANCELLED");
            }
            (OrderStatus::RefundPending, _) if ship != ShipmentStatus::Created => {
                // Picked up before the cancel reached the shipment: too late, it ships.
                s.cancel_reason = None;
                s.set(OrderStatus::Shipped, ctx.now_ms);
                notify(&p, ctx, "ORDER_SHIPPED");
                if ship == ShipmentStatus::Delivered {
                    delivered(s, &p, ctx);
                }
            }
            (OrderStatus::Confirmed, ShipmentStatus::Delivered) => {
                s.set(OrderStatus::Shipped, ctx.now_ms);
                notify(&p, ctx, "ORDER_SHIPPED");
                delivered(s, &p, ctx);
            }
            (
                OrderStatus::Confirmed,
                ShipmentStatus::PickedUp
                | ShipmentStatus::InTransit
                | ShipmentStatus::OutForDelivery,
            ) => {
                s.set(OrderStatus::Shipped, ctx.now_ms);
                notify(&p, ctx, "ORDER_SHIPPED");
            }
            (OrderStatus::Shipped, ShipmentStatus::Delivered) => delivered(s, &p, ctx),
            (OrderStatus::Shipped, ShipmentStatus::Returned) => {
                // Every delivery attempt failed: the goods are back on the shelf and the
                // money goes back (the saga's compensation).
                s.set(OrderStatus::Returned, ctx.now_ms);
                s.cancel_reason = Some("delivery_failed".into());
                refund_and_restock(s, &p, ctx);
                notify(&p, ctx, "ORDER_RETURNED");
            }
            _ => {}
        },
        OrderCommand::RequestRefund {
            refund_id,
            request_hash,
            lines,
            by_admin,
        } => request_refund(s, &p, ctx, refund_id, request_hash, lines, by_admin)?,
        OrderCommand::RefundSettled { refund_id } => {
            if let Some(r) = s.refunds.iter_mut().find(|r| r.refund_id == refund_id) {
                if r.completed_at_ms.is_none() {
                    r.completed_at_ms = Some(ctx.now_ms);
                }
            }
        }
        OrderCommand::Get => {}
    }
    view(s, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::DomainConfig;
    use crate::message::{Body, Destination};
    use proptest::prelude::*;

    const DAY_MS: u64 = 24 * 3600 * 1000;

    fn run_at(
        s: &mut OrderState,
        now_ms: u64,
        cmd: OrderCommand,
    ) -> Result<Vec<crate::OutboxMessage>, DomainError> {
        let me = EntityRef::new(EntityKind::Order, "o1");
        let cfg = DomainConfig::default();
        let mut ctx = Ctx::new(now_ms, &me, 1, &cfg);
        let mut work = s.clone();
        handle(&mut work, cmd, &mut ctx)?;
        *s = work;
        Ok(ctx.take_outbox())
    }

    fn run(s: &mut OrderState, cmd: OrderCommand) -> Vec<crate::OutboxMessage> {
        run_at(s, 1_000, cmd).unwrap()
    }

    fn placement(courier: &str, price: u64) -> Placement {
        Placement {
            customer: "u".into(),
            lines: vec![
                OrderLine {
                    sku: "A".into(),
                    quantity: 2,
                    unit_price_minor: 1_000,
                },
                OrderLine {
                    sku: "B".into(),
                    quantity: 1,
                    unit_price_minor: 500,
                },
            ],
            method: Method::Wallet,
            address: Address {
                name: "n".into(),
                line1: "l".into(),
                city: "Pune".into(),
                postal_code: "411001".into(),
                country: "IN".into(),
            },
            request_hash: "h".into(),
            placed_at_ms: 0,
            shipping: ShippingChoice {
                courier: courier.into(),
                price_minor: price,
            },
        }
    }

    /// An order placed, paid and taken to `ship` by the shipment.
    fn shipped_to(ship: &[ShipmentStatus]) -> OrderState {
        let mut s = OrderState::default();
        run(&mut s, OrderCommand::Place(placement("swift", 99)));
        run(&mut s, OrderCommand::StockReserved { sku: "A".into() });
        let out = run(&mut s, OrderCommand::StockReserved { sku: "B".into() });
        // The payment is asked for the lines plus shipping.
        assert!(out.iter().any(|m| matches!(
            &m.body,
            Body::Command(Command::Payment(PaymentCommand::Authorize {
                amount_minor: 2_599,
                ..
            }))
        )));
        let out = run(&mut s, OrderCommand::PaymentSucceeded);
        assert!(out.iter().any(|m| matches!(
            &m.body,
            Body::Command(Command::Shipment(ShipmentCommand::Create { courier, .. })) if courier == "swift"
        )));
        for st in ship {
            run(&mut s, OrderCommand::ShipmentProgress { status: *st });
        }
        s
    }

    fn refund(lines: &[(&str, u32)], key: &str) -> OrderCommand {
        OrderCommand::RequestRefund {
            refund_id: key.into(),
            request_hash: format!("{lines:?}"),
            lines: lines.iter().map(|(k, q)| (k.to_string(), *q)).collect(),
            by_admin: false,
        }
    }

    #[test]
    fn a_returned_parcel_restocks_and_refunds_then_ends_refunded() {
        use ShipmentStatus::*;
        let mut s = shipped_to(&[PickedUp, InTransit, OutForDelivery]);
        let out = run(&mut s, OrderCommand::ShipmentProgress { status: Returned });
        assert_eq!(s.status(), Some(OrderStatus::Returned));
        let restocked: u64 = out
            .iter()
            .filter_map(|m| match &m.body {
                Body::Command(Command::Stock(StockCommand::Restock { quantity, .. })) => {
                    Some(*quantity)
                }
                _ => None,
            })
            .sum();
        assert_eq!(restocked, 3);
        assert!(out.iter().any(|m| matches!(
            m.body,
            Body::Command(Command::Payment(PaymentCommand::Refund))
        )));
        run(&mut s, OrderCommand::RefundCompleted);
        assert_eq!(s.status(), Some(OrderStatus::Refunded));
        assert!(s.status().is_some_and(OrderStatus::is_terminal));
    }

    #[test]
    fn refunds_need_delivery_respect_the_window_and_never_exceed_the_paid_amount() {
        use ShipmentStatus::*;
        let mut s = shipped_to(&[PickedUp]);
        assert!(matches!(
            run_at(&mut s, 1_000, refund(&[], "k0")),
            Err(DomainError::Conflict(_))
        ));
        run(&mut s, OrderCommand::ShipmentProgress { status: Delivered });
        // Per line, then a retry of the same key (same answer), then the same key with
        // another body.
        run(&mut s, refund(&[("A", 1)], "k1"));
        run(&mut s, refund(&[("A", 1)], "k1"));
        assert_eq!(s.refunds.len(), 1);
        assert_eq!(s.refunds[0].amount_minor, 1_000);
        assert_eq!(
            run_at(&mut s, 1_000, refund(&[("B", 1)], "k1")),
            Err(DomainError::IdempotencyMismatch)
        );
        // More units than are left.
        assert!(matches!(
            run_at(&mut s, 1_000, refund(&[("A", 2)], "k2")),
            Err(DomainError::Conflict(_))
        ));
        assert!(matches!(
            run_at(&mut s, 1_000, refund(&[("Z", 1)], "k2")),
            Err(DomainError::Invalid { .. })
        ));
        // The owner after the window: refused; an admin: fine.
        let late = 1_000 + RETURN_WINDOW_MS + DAY_MS;
        assert!(matches!(
            run_at(&mut s, late, refund(&[("B", 1)], "k3")),
            Err(DomainError::Conflict(_))
        ));
        // Full: the rest, shipping included.
        let admin_full = OrderCommand::RequestRefund {
            refund_id: "k4".into(),
            request_hash: "h".into(),
            lines: vec![],
            by_admin: true,
        };
        run_at(&mut s, late, admin_full).unwrap();
        assert_eq!(s.refunds[1].amount_minor, 2_599 - 1_000);
        assert!(matches!(
            run_at(&mut s, 1_000, refund(&[("B", 1)], "k5")),
            Err(DomainError::Conflict(_))
        ));
        assert_eq!(s.status(), Some(OrderStatus::Delivered));
    }

    proptest! {
        /// Whatever refunds are asked, in whatever order, the sum of those accepted never
        /// exceeds what was paid, and no line is refunded beyond its units.
        #[test]
        fn accepted_refunds_never_exceed_the_paid_amount(reqs in prop::collection::vec(
            prop::collection::vec((prop_oneof![Just("A"), Just("B")], 1u32..3), 0..3), 0..12)) {
            use ShipmentStatus::*;
            let mut s = shipped_to(&[PickedUp, Delivered]);
            for (i, lines) in reqs.iter().enumerate() {
                let _ = run_at(&mut s, 2_000, refund(lines, &format!("k{i}")));
                let total: u64 = s.refunds.iter().map(|r| r.amount_minor).sum();
                prop_assert!(total <= 2_599);
                for (sku, units) in [("A", 2u64), ("B", 1)] {
                    let refunded: u64 = s.refunds.iter().flat_map(|r| r.lines.iter())
                        .filter(|(k, _)| k == sku).map(|(_, q)| u64::from(*q)).sum();
                    prop_assert!(refunded <= units);
                }
            }
        }
    }

    fn placement_of(skus: &[&str]) -> Placement {
        Placement {
            customer: "cust".into(),
            lines: skus
                .iter()
                .map(|s| OrderLine {
                    sku: s.to_string(),
                    quantity: 1,
                    unit_price_minor: 100,
                })
                .collect(),
            method: Method::Wallet,
            address: Address {
                name: "A".into(),
                line1: "L".into(),
                city: "C".into(),
                postal_code: "1".into(),
                country: "IN".into(),
            },
            request_hash: "h".into(),
            placed_at_ms: 0,
            shipping: ShippingChoice::default(),
        }
    }

    /// Runs `cmd`; the messages it sent to review boards, as (SKU, customer).
    fn step(s: &mut OrderState, cmd: OrderCommand) -> Vec<(String, String)> {
        let me = EntityRef::new(EntityKind::Order, "o-1");
        let config = DomainConfig::default();
        let mut ctx = Ctx::new(1, &me, 1, &config);
        handle(s, cmd, &mut ctx).expect("accepted");
        ctx.take_outbox()
            .into_iter()
            .filter_map(|m| match (m.to, m.body) {
                (
                    Destination::Entity(to),
                    Body::Command(Command::Review(ReviewCommand::Delivered { customer, order_id })),
                ) => {
                    assert_eq!(to.kind, EntityKind::ReviewBoard);
                    assert_eq!(order_id, "o-1");
                    Some((to.id, customer))
                }
                _ => None,
            })
            .collect()
    }

    fn confirmed(skus: &[&str]) -> OrderState {
        let mut s = OrderState::default();
        assert!(step(&mut s, OrderCommand::Place(placement_of(skus))).is_empty());
        for sku in skus {
            step(
                &mut s,
                OrderCommand::StockReserved {
                    sku: sku.to_string(),
                },
            );
        }
        assert!(step(&mut s, OrderCommand::PaymentSucceeded).is_empty());
        assert_eq!(s.status(), Some(OrderStatus::Confirmed));
        s
    }

    #[test]
    fn delivery_tells_the_review_board_of_each_sku_once() {
        let mut s = confirmed(&["B", "A"]);
        let progress = |status| OrderCommand::ShipmentProgress { status };
        assert!(step(&mut s, progress(ShipmentStatus::PickedUp)).is_empty());
        let sent = step(&mut s, progress(ShipmentStatus::Delivered));
        assert_eq!(
            sent,
            [
                ("A".to_string(), "cust".to_string()),
                ("B".into(), "cust".into())
            ]
        );
        assert_eq!(s.status(), Some(OrderStatus::Delivered));
        // A repeated progress report sends nothing more.
        assert!(step(&mut s, progress(ShipmentStatus::Delivered)).is_empty());

        // Delivered straight from CONFIRMED (the pickup report was overtaken) also tells.
        let mut s = confirmed(&["A"]);
        assert_eq!(step(&mut s, progress(ShipmentStatus::Delivered)).len(), 1);
    }

    #[test]
    fn an_order_that_never_arrives_tells_no_review_board() {
        let mut s = confirmed(&["A"]);
        assert!(step(&mut s, OrderCommand::Cancel).is_empty());
        assert!(step(
            &mut s,
            OrderCommand::ShipmentProgress {
                status: ShipmentStatus::Cancelled
            }
        )
        .is_empty());
        assert!(step(&mut s, OrderCommand::RefundCompleted).is_empty());
        assert_eq!(s.status(), Some(OrderStatus::Refunded));
    }

    /// The SKUs `out` releases holds on.
    fn releases(out: &[crate::OutboxMessage]) -> Vec<String> {
        out.iter()
            .filter(|m| {
                matches!(
                    m.body,
                    Body::Command(Command::Stock(StockCommand::Release { .. }))
                )
            })
            .filter_map(|m| match &m.to {
                crate::Destination::Entity(e) => Some(e.id.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_hold_made_after_the_order_let_go_of_its_stock_is_released() {
        // Cancelled while pending: its releases may overtake a reservation still on its way.
        let mut s = OrderState::default();
        run(&mut s, OrderCommand::Place(placement("swift", 99)));
        assert_eq!(releases(&run(&mut s, OrderCommand::Cancel)), ["A", "B"]);
        assert_eq!(s.status(), Some(OrderStatus::Cancelled));
        let late = run(&mut s, OrderCommand::StockReserved { sku: "A".into() });
        assert_eq!(releases(&late), ["A"]);
        // Paid: the holds were committed, so a hold made now is a stray one too.
        let mut s = shipped_to(&[]);
        assert_eq!(s.status(), Some(OrderStatus::Confirmed));
        let late = run(&mut s, OrderCommand::StockReserved { sku: "B".into() });
        assert_eq!(releases(&late), ["B"]);
        // While the order holds stock, a repeated answer releases nothing.
        let mut s = OrderState::default();
        run(&mut s, OrderCommand::Place(placement("swift", 99)));
        run(&mut s, OrderCommand::StockReserved { sku: "A".into() });
        let again = run(&mut s, OrderCommand::StockReserved { sku: "A".into() });
        assert!(releases(&again).is_empty());
    }
}
