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

mod events;
mod payment_status;
mod refunds;
mod steps;
#[cfg(test)]
mod tests;

pub use payment_status::OrderPaymentStatus;

use crate::entity::{Ctx, Outcome};
use crate::error::DomainError;
use crate::money::sum_minor;
use crate::payment::Method;
use crate::shipment::ShipmentStatus;
use crate::shipping::ShippingChoice;
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
    pub payment_status: OrderPaymentStatus,
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

/// Handles one command.
pub fn handle(
    s: &mut OrderState,
    cmd: OrderCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    if let OrderCommand::Place(p) = cmd {
        steps::place(s, p, ctx)?;
        return steps::view(s, ctx);
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
            if p.request_hash != request_hash
                && !agora_seams::planted::is_planted(agora_seams::planted::Bug::SkipRequestHash)
            {
                return Err(DomainError::IdempotencyMismatch);
            }
        }
        OrderCommand::AwaitSettled => {
            if s.settlement.is_none() {
                return Ok(Outcome::Park);
            }
        }
        OrderCommand::StockReserved { sku } => events::stock_answer(s, &p, status, sku, None, ctx),
        OrderCommand::StockRejected { sku, available } => {
            events::stock_answer(s, &p, status, sku, Some(available), ctx)
        }
        OrderCommand::PaymentStarted => events::payment_started(s, status, ctx),
        OrderCommand::PaymentSucceeded => events::payment_succeeded(s, &p, status, ctx),
        OrderCommand::PaymentFailed { reason } => {
            s.payment_status = OrderPaymentStatus::Failed;
            let reason = format!("payment_failed: {reason}");
            events::payment_ended_unpaid(s, &p, status, &reason, ctx);
        }
        OrderCommand::PaymentTimeout => {
            events::payment_ended_unpaid(s, &p, status, "payment_timeout", ctx)
        }
        OrderCommand::ExpireReservation => {
            if status.holds_reservation() {
                steps::end_unpaid(s, &p, ctx, OrderStatus::Expired, "reservation_expired");
            }
        }
        OrderCommand::RefundCompleted => events::refund_completed(s, &p, status, ctx),
        OrderCommand::Cancel => events::cancel(s, &p, status, ctx)?,
        OrderCommand::ShipmentProgress { status: ship } => {
            events::shipment_progress(s, &p, status, ship, ctx)
        }
        OrderCommand::RequestRefund {
            refund_id,
            request_hash,
            lines,
            by_admin,
        } => refunds::request_refund(s, &p, ctx, refund_id, request_hash, lines, by_admin)?,
        OrderCommand::RefundSettled { refund_id } => {
            if let Some(r) = s.refunds.iter_mut().find(|r| r.refund_id == refund_id) {
                if r.completed_at_ms.is_none() {
                    r.completed_at_ms = Some(ctx.now_ms);
                }
            }
        }
        OrderCommand::Get => {}
    }
    steps::view(s, ctx)
}
