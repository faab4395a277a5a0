//! Order: runs the order saga as a durable orchestrator. Every step is a state change plus
//! outbox messages written in one transaction; every failure path compensates.
//!
//! `PENDING → STOCK_RESERVED → AWAITING_PAYMENT → PAYMENT_PROCESSING → CONFIRMED → SHIPPED →
//! DELIVERED`, with `PAYMENT_FAILED → CANCELLED`, `CANCELLED`, `EXPIRED`, and
//! `REFUND_PENDING → REFUNDED` for a cancel after confirmation (or `REFUND_PENDING → SHIPPED`
//! when the courier had already picked the parcel up: the cancel came too late).

use crate::account::AccountCommand;
use crate::cart::CartCommand;
use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::DomainError;
use crate::ids::shipment_id_for_order;
use crate::inbox::InboxCommand;
use crate::payment::{Method, PaymentCommand};
use crate::review::ReviewCommand;
use crate::shipment::{ShipmentCommand, ShipmentStatus};
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
}

impl Placement {
    /// The order total in minor units.
    pub fn total_minor(&self) -> u64 {
        self.lines
            .iter()
            .map(|l| u64::from(l.quantity) * l.unit_price_minor)
            .sum()
    }
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

fn release_all(p: &Placement, ctx: &mut Ctx) {
    let order_id = ctx.me.id.clone();
    for l in &p.lines {
        ctx.send(
            stock(&l.sku),
            "STOCK_RELEASE",
            Command::Stock(StockCommand::Release {
                order_id: order_id.clone(),
            }),
        );
        if cfg!(feature = "planted-double-release") {
            // The planted bug: compensation also puts the units back a second way.
            ctx.send(
                stock(&l.sku),
                "STOCK_UPDATED",
                Command::Stock(StockCommand::Restock {
                    order_id: order_id.clone(),
                    quantity: u64::from(l.quantity),
                }),
            );
        }
    }
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
    }))
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
        OrderCommand::StockReserved { sku } | OrderCommand::StockRejected { sku, .. }
            if status != OrderStatus::Pending || s.stock_answers.contains_key(&sku) =>
        {
            // A late or repeated answer: the release sent on ending covers any hold.
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
            if status == OrderStatus::RefundPending {
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
            | OrderStatus::Refunded => {}
            other => {
                return Err(DomainError::Conflict(format!(
                    "an order that is {} cannot be cancelled",
                    other.name()
                )))
            }
        },
        OrderCommand::ShipmentProgress { status: ship } => match (status, ship) {
            (OrderStatus::RefundPending, ShipmentStatus::Cancelled) => {
                s.payment_status = "refunding".into();
                let order_id = ctx.me.id.clone();
                ctx.send(
                    payment(ctx),
                    "REFUND_REQUESTED",
                    Command::Payment(PaymentCommand::Refund),
                );
                for l in &p.lines {
                    ctx.send(
                        stock(&l.sku),
                        "STOCK_UPDATED",
                        Command::Stock(StockCommand::Restock {
                            order_id: order_id.clone(),
                            quantity: u64::from(l.quantity),
                        }),
                    );
                }
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
            _ => {}
        },
        OrderCommand::Get => {}
    }
    view(s, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::DomainConfig;
    use crate::message::{Body, Destination};

    fn placement(skus: &[&str]) -> Placement {
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
        assert!(step(&mut s, OrderCommand::Place(placement(skus))).is_empty());
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
}
